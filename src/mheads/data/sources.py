"""Uniform read access to a data set's files, whether they sit in a folder or inside a tar archive.

Readers see a `Source`: a sorted list of relative POSIX file names and a way to read them. Archives
are read in place (no extraction to disk): `read_many` visits members in archive order so that a
compressed archive is decompressed in one forward pass instead of being rewound for every member.
"""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from mheads.data.errors import DataError

__all__ = ["ARCHIVE_SUFFIXES", "ArchiveSource", "DirSource", "Source", "is_archive_name", "open_source"]

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, ValueError)


def is_archive_name(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _skipped(parts: tuple[str, ...]) -> bool:
    # Hidden files (.DS_Store, editor swap files) and macOS resource forks are never data.
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


class Source:
    """A read-only set of files named by relative POSIX paths."""

    path: Path

    def files(self) -> list[str]:
        """Sorted relative names of all regular files (hidden entries left out)."""
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def names_under(self, root: str) -> set[str]:
        """Names of the files below folder `root` ("" for the top), relative to `root`."""
        prefix = f"{root}/" if root else ""
        return {n[len(prefix) :] for n in self.files() if n.startswith(prefix)}

    def read_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Yield ``(name, data)`` for each of `names`, in whatever order reads fastest."""
        for name in names:
            yield name, self.read(name)

    def where(self, name: str) -> str:
        """How error messages name a file of this source."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Source:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DirSource(Source):
    """The files under a folder (symbolic links to files are followed)."""

    def __init__(self, path: Path):
        self.path = path
        self._files: list[str] | None = None

    def files(self) -> list[str]:
        if self._files is None:
            found = []
            for folder, dirs, names in os.walk(self.path, onerror=self._walk_error):
                dirs[:] = [d for d in dirs if not _skipped((d,))]
                rel = Path(folder).relative_to(self.path)
                for name in names:
                    if not _skipped((name,)) and (Path(folder) / name).is_file():
                        found.append((rel / name).as_posix())
            self._files = sorted(found)
        return self._files

    def _walk_error(self, exc: OSError) -> None:
        # os.walk skips unreadable folders silently by default; a half-listed data set must not pass.
        raise DataError(
            f"{exc.filename or self.path}: cannot list the folder ({exc.strerror or exc})"
        ) from exc

    def read(self, name: str) -> bytes:
        try:
            return (self.path / name).read_bytes()
        except OSError as exc:
            raise DataError(f"{self.where(name)}: cannot read the file ({exc.strerror or exc})") from exc

    def where(self, name: str) -> str:
        return str(self.path / name)


class ArchiveSource(Source):
    """The regular-file members of a tar archive (plain, gzip, bzip2 or xz), read without extracting."""

    def __init__(self, path: Path):
        self.path = path
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] | None = None

    def _open(self) -> tuple[tarfile.TarFile, dict[str, tarfile.TarInfo]]:
        if self._tar is None or self._members is None:
            try:
                # Kept open across reads (closed by close()), so no context manager here.
                self._tar = tarfile.open(self.path, "r:*")  # noqa: SIM115
                members = {}
                for info in self._tar.getmembers():
                    name = PurePosixPath(info.name.lstrip("/"))
                    parts = tuple(p for p in name.parts if p != ".")
                    # Links are skipped: names never lead out of the archive, and data sets need none.
                    if info.isreg() and parts and ".." not in parts and not _skipped(parts):
                        members["/".join(parts)] = info
                self._check_end_marker(self._tar)
            except _ARCHIVE_ERRORS as exc:
                self.close()
                raise DataError(
                    f"{self.path}: not a readable tar archive or truncated ({_reason(exc)}); expected a "
                    f"{'/'.join(ARCHIVE_SUFFIXES)} file"
                ) from exc
            self._members = members
        return self._tar, self._members

    def _check_end_marker(self, tar: tarfile.TarFile) -> None:
        # tarfile stops listing silently when an uncompressed archive is cut at a header boundary, so
        # members would go missing without an error; a complete archive ends with zero blocks after
        # the last member. (Compressed archives are covered by their stream's own end check.)
        if (
            isinstance(tar.fileobj, io.BufferedReader)
            and self.path.stat().st_size - tar.offset < tarfile.BLOCKSIZE
        ):
            raise tarfile.ReadError("archive ends without the end-of-archive blocks")

    def files(self) -> list[str]:
        return sorted(self._open()[1])

    def read(self, name: str) -> bytes:
        tar, members = self._open()
        if name not in members:
            raise DataError(f"{self.where(name)}: no such member in the archive")
        try:
            handle = tar.extractfile(members[name])
            assert handle is not None  # regular members always have a file object
            data = handle.read()
        except _ARCHIVE_ERRORS as exc:
            raise DataError(
                f"{self.where(name)}: cannot read the member, archive corrupt or truncated ({_reason(exc)})"
            ) from exc
        if len(data) != members[name].size:
            raise DataError(
                f"{self.where(name)}: member is truncated ({len(data)} of {members[name].size} bytes); "
                "archive corrupt"
            )
        return data

    def read_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        _, members = self._open()
        wanted = sorted(names, key=lambda n: members[n].offset_data if n in members else -1)
        for name in wanted:
            yield name, self.read(name)

    def where(self, name: str) -> str:
        return f"{self.path}:{name}"

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
        self._tar = None
        self._members = None


def open_source(path: Path) -> Source:
    """A `Source` for a folder or an archive file; `path` must exist (checked by the caller)."""
    if path.is_dir():
        return DirSource(path)
    return ArchiveSource(path)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, DataError) else f"{type(exc).__name__}: {text}"
