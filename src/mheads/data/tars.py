"""Reading tar archives (plain, gzip, bzip2 or xz) without trusting them: bounded headers, complete listings.

Python's `tarfile` alone trusts an archive in three ways that matter for data someone hands over:

- it reads a pax or GNU long-name header whole, whatever size the header declares (a few kilobytes of a
  compressed archive can declare gigabytes);
- after the first member it stops listing without a word at a truncated, empty or invalid header, so an
  archive cut mid-member or at a header boundary, or corrupted in a header, lists fewer members and the rest
  of the data set silently goes missing;
- it lists any number of members, each costing memory (a few megabytes of compressed headers can list
  millions).

`TarReader` reads every archive through a guard that refuses any single read above `bounds.read_limit()`,
refuses a listing whose members would take more memory than that limit, and accepts a listing only if an
end-of-archive block (512 zero bytes) follows the last member. Compressed archives are decompressed as a
stream, so a member's bytes are produced, and counted, as they are read.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zlib
from pathlib import Path

from mheads.data.bounds import read_at_most, read_limit, too_big
from mheads.data.errors import DataError

__all__ = ["ENTRY_BYTES", "TAR_ERRORS", "TarReader", "is_tar"]

# Memory one listed member costs: tarfile's TarInfo and the reader's index entry (about 500 bytes measured).
ENTRY_BYTES = 1024
TAR_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError)
_NOT_TAR = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)  # is_tar: False
_TAIL_BYTES = 16 << 20  # zero padding accepted after the end-of-archive block (GNU tar pads to 10 KiB)
# (signature, compression, opener of a decompressing file object over the raw file)
_MAGICS = (
    (b"\x1f\x8b", "gzip", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (b"BZh", "bzip2", bz2.BZ2File),
    (b"\xfd7zXZ\x00", "xz", lzma.LZMAFile),
)


class _Guard:
    """The file object `tarfile` reads through: no single read may ask for more than ``limit`` bytes, and
    the last header-sized read is remembered (where the listing stopped, without seeking back)."""

    def __init__(self, stream: io.BufferedIOBase, limit: int, path: Path):
        self.stream, self.limit, self.path = stream, limit, path
        self.last_block: tuple[int, bytes] | None = None

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self.limit:
            at = self.stream.tell()
            raise too_big(f"{self.path}: header or member at byte {at}", size, self.limit, "asks to read")
        at = self.stream.tell()
        data = self.stream.read(size)
        if size == tarfile.BLOCKSIZE:
            self.last_block = (at, data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.stream.seek(offset, whence)

    def tell(self) -> int:
        return self.stream.tell()

    # The rest of tarfile's file-object protocol: an archive opened with ``fileobj=`` is never written, and
    # tarfile leaves closing it to its owner (`TarReader.close`).
    def write(self, b: bytes) -> int:
        raise io.UnsupportedOperation(f"{self.path}: opened for reading only")

    def close(self) -> None:
        pass


class TarReader:
    """One tar archive open for reading; raises `DataError` naming the archive for anything unreadable.

    plain_only: refuse compressed archives (readers that reach members by byte offset need plain tar).
    """

    def __init__(self, path: Path, *, plain_only: bool = False):
        self.path = Path(path)
        self.limit = read_limit()
        self._files: list[io.BufferedIOBase] = []
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 - kept open until close()
            self._files.append(raw)
            magic = raw.read(6)
            raw.seek(0)
            stream: io.BufferedIOBase = raw
            for signature, compression, opener in _MAGICS:
                if magic.startswith(signature):
                    if plain_only:
                        raise DataError(
                            f"{self.path}: a {compression}-compressed tar; expected an "
                            "uncompressed .tar (members are read in place by byte offset)"
                        )
                    stream = opener(raw)
                    self._files.append(stream)
            self._guard = _Guard(stream, self.limit, self.path)
            self.tar = tarfile.open(fileobj=self._guard, mode="r:")
        except BaseException as exc:
            self.close()
            if isinstance(exc, DataError) or not isinstance(exc, TAR_ERRORS):
                raise
            raise self._unreadable(exc) from exc

    def _unreadable(self, exc: BaseException) -> DataError:
        text = str(exc) or type(exc).__name__
        return DataError(
            f"{self.path}: not a readable tar archive or truncated ({type(exc).__name__}: "
            f"{text}); expected a complete .tar, .tar.gz, .tar.bz2 or .tar.xz file"
        )

    def members(self, max_size: int | None = None) -> list[tarfile.TarInfo]:
        """Every member in archive order. Refuses a member whose data is above ``max_size`` bytes (None: no
        check, for readers that never read members whole), more members than the memory limit allows, and an
        archive without an end-of-archive block after its last member (cut or corrupt)."""
        found: list[tarfile.TarInfo] = []
        try:
            for info in self.tar:
                if (len(found) + 1) * ENTRY_BYTES > self.limit:
                    raise DataError(
                        f"{self.path}: lists more than {len(found)} members (about {ENTRY_BYTES} bytes of "
                        f"memory each, at most {self.limit // ENTRY_BYTES} within the read limit); expected "
                        "a smaller archive: split it, or use a folder"
                    )
                data = info.isreg() or info.type not in tarfile.SUPPORTED_TYPES  # types whose size is data
                if max_size is not None and data and info.size > max_size:
                    raise too_big(f"{self.path}:{info.name}", info.size, max_size, "member holds")
                found.append(info)
            self._check_end(len(found))
        except DataError:
            raise
        except TAR_ERRORS as exc:
            raise self._unreadable(exc) from exc
        return found

    def _check_end(self, count: int) -> None:
        offset = self.tar.offset
        last = self._guard.last_block
        if last is not None and last[0] == offset:
            block = last[1]
        else:
            self._guard.seek(offset)
            block = self._guard.read(tarfile.BLOCKSIZE)
        if len(block) < tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
            problem = "ends" if len(block) < tarfile.BLOCKSIZE else "has an unreadable header"
            raise DataError(
                f"{self.path}: {problem} at byte {offset}, after {count} member(s), where the next member or "
                "the end-of-archive block should be: the archive is truncated or corrupt; expected a "
                "complete tar file (copy or download it again)"
            )
        # What follows is padding: zeros, ending soon. Reading it to the end also reaches the end of a
        # compressed stream, where its checksum and length are checked (a cut trailer is a cut archive).
        left = _TAIL_BYTES
        while chunk := self._guard.read(min(1 << 20, left + 1)):
            if chunk.count(0) != len(chunk) or len(chunk) > left:
                raise DataError(
                    f"{self.path}: more data after the end-of-archive block at byte {offset} (another "
                    "archive appended, or corruption); expected one tar archive ending there (zero padding "
                    f"of at most {_TAIL_BYTES >> 20} MiB)"
                )
            left -= len(chunk)

    def read(self, info: tarfile.TarInfo, where: str, max_bytes: int | None = None) -> bytes:
        """The data of member ``info`` (``where`` names it in errors), refused before reading when its
        header size is above the read limit (or ``max_bytes``, when lower), and counted as it is
        decompressed."""
        limit = self.limit if max_bytes is None else min(self.limit, max_bytes)
        if info.size > limit:
            raise too_big(where, info.size, limit, "member holds")
        try:
            handle = self.tar.extractfile(info)
            if handle is None:
                raise DataError(f"{where}: not a regular file member; expected a file")
            data = read_at_most(handle, info.size, limit, where)
        except DataError:
            raise
        except TAR_ERRORS as exc:
            raise DataError(
                f"{where}: cannot read the member, archive corrupt or truncated ({type(exc).__name__}: {exc})"
            ) from exc
        if len(data) != info.size:
            raise DataError(
                f"{where}: member is truncated ({len(data)} of {info.size} bytes); archive corrupt"
            )
        return data

    def close(self) -> None:
        tar = getattr(self, "tar", None)
        if tar is not None:
            tar.close()
        for f in reversed(self._files):
            f.close()
        self._files = []

    def __enter__(self) -> TarReader:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_tar(path: Path) -> bool:
    """Whether ``path`` opens as a tar archive (plain or compressed): its first header parses. A file that
    cannot be read, or whose first header asks for more than the read limit, raises `DataError`."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    try:
        with TarReader(path):
            return True
    except DataError as exc:
        if isinstance(exc.__cause__, _NOT_TAR):
            return False
        raise
