"""Uniform read access to a data set's files, whether they sit in a folder or inside a tar archive.

Readers see a `Source`: a sorted list of relative POSIX file names and a way to read them. Archives
are read in place (no extraction to disk): `read_many` visits members in archive order so that a
compressed archive is decompressed in one forward pass instead of being rewound for every member.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from mheads.data.bounds import read_limit
from mheads.data.decode import IMAGE_SUFFIXES, MAX_IMAGE_BYTES
from mheads.data.errors import DataError
from mheads.data.files import read_regular, walk_files
from mheads.data.tars import TarReader

__all__ = ["ARCHIVE_SUFFIXES", "ArchiveSource", "DirSource", "Source", "is_archive_name", "open_source"]

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


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
    """The files under a folder, walked and read by the rules of :mod:`mheads.data.files` (regular files only,
    links followed only inside the folder, UTF-8 names); an image file is read only up to
    ``MAX_IMAGE_BYTES``."""

    def __init__(self, path: Path):
        self.path = path
        self._files: list[str] | None = None

    def files(self) -> list[str]:
        if self._files is None:
            self._files = sorted(walk_files(self.path))
        return self._files

    def read(self, name: str) -> bytes:
        image = PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES
        return read_regular(
            self.path / name, self.where(name), max_bytes=MAX_IMAGE_BYTES if image else read_limit()
        )

    def where(self, name: str) -> str:
        return str(self.path / name)


class ArchiveSource(Source):
    """The regular-file members of a tar archive (plain, gzip, bzip2 or xz), read without extracting, through
    :class:`mheads.data.tars.TarReader`: a cut or corrupt archive is refused, not read in part, and no
    member above the read limit (:mod:`mheads.data.bounds`) is read."""

    def __init__(self, path: Path):
        self.path = path
        self._reader: TarReader | None = None
        self._members: dict[str, tarfile.TarInfo] | None = None

    def _open(self) -> tuple[TarReader, dict[str, tarfile.TarInfo]]:
        if self._reader is None or self._members is None:
            self._reader = TarReader(self.path)
            try:
                members = {}
                for info in self._reader.members(max_size=self._reader.limit):
                    name = PurePosixPath(info.name.lstrip("/"))
                    parts = tuple(p for p in name.parts if p != ".")
                    # Links are skipped: names never lead out of the archive, and data sets need none.
                    if info.isreg() and parts and ".." not in parts and not _skipped(parts):
                        members["/".join(parts)] = info
            except BaseException:
                self.close()
                raise
            self._members = members
        return self._reader, self._members

    def files(self) -> list[str]:
        return sorted(self._open()[1])

    def read(self, name: str) -> bytes:
        reader, members = self._open()
        if name not in members:
            raise DataError(f"{self.where(name)}: no such member in the archive")
        image = os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES  # not PurePosixPath: 60,000 times
        return reader.read(members[name], self.where(name), MAX_IMAGE_BYTES if image else None)

    def read_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        _, members = self._open()
        wanted = sorted(names, key=lambda n: members[n].offset_data if n in members else -1)
        for name in wanted:
            yield name, self.read(name)

    def where(self, name: str) -> str:
        return f"{self.path}:{name}"

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader = None
        self._members = None


def open_source(path: Path) -> Source:
    """A `Source` for a folder or an archive file; `path` must exist (checked by the caller)."""
    if path.is_dir():
        return DirSource(path)
    return ArchiveSource(path)
