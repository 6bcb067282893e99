"""The files of a data folder someone hands over: which entries are data, and how one is read.

Every reader of a folder (the resident loader's :class:`~mheads.data.sources.DirSource`, the streaming index,
``mheads shard``) walks it with :func:`walk_files` and reads it with :func:`read_regular`, so the rules and
the examples they find are the same for all:

- Only regular files and folders are data. A FIFO, socket or device file (``/dev/zero`` linked as ``x.jpg``)
  is refused, naming it: opening a FIFO waits for a writer forever, and a device never ends.
- A symbolic link is followed only when its target lies inside the data folder (the folder itself resolved,
  so a data folder that is a link is fine); a link out of it, a broken link and a link loop are refused.
- Names must be valid UTF-8 (indexes, caches, shards and reports store them as UTF-8); a name that is not is
  refused, shown with its undecodable bytes escaped (``\\xff``), to be renamed.
- Hidden entries (``.name``) and macOS ``__MACOSX`` folders are skipped, never read.
- A read takes the size from the opened descriptor (opened non-blocking, so even a FIFO cannot block the
  open) and refuses a file over the caller's bound before reading a byte.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mheads.data.errors import DataError

__all__ = ["check_name", "display", "read_regular", "skipped", "walk_files"]

# Non-blocking: opening a FIFO for reading would otherwise wait for a writer (no effect on regular files).
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_KINDS = (
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISDIR, "folder"),
)


def skipped(name: str) -> bool:
    """Hidden files (.DS_Store, editor swap files) and macOS resource forks are never data."""
    return name.startswith(".") or name == "__MACOSX"


def display(path: str | os.PathLike) -> str:
    """``path`` as messages show it: undecodable bytes of a non-UTF-8 name escaped as ``\\xff``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def check_name(path: str | os.PathLike) -> None:
    """Refuse (``DataError``) a path whose name is not valid UTF-8."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(
            f"{display(path)}: file name is not valid UTF-8; rename it to UTF-8 (for example "
            "with convmv) to use it as data"
        ) from None


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "special file")


def _not_regular(where: str, mode: int) -> DataError:
    return DataError(
        f"{where}: a {_kind(mode)}, not a regular file; a data folder may hold only regular "
        "files and folders (remove it)"
    )


def _inside(real: str, real_root: str) -> bool:
    return os.path.commonpath([real, real_root]) == real_root


# a folder to walk: (its path, its name relative to root, its resolved path, the resolved folders above it,
# itself included): a link back to any of those is a loop
_Folder = tuple[str, str, str, frozenset[str]]


def walk_files(root: str | os.PathLike, top: str | os.PathLike | None = None) -> list[str]:
    """The data files below ``top`` (default ``root``, any depth), as POSIX names relative to ``root``, in no
    particular order; raises ``DataError`` for an entry the module docstring's rules refuse."""
    root = Path(root)
    real_root = os.path.realpath(root)
    stack = [_first_folder(root, root if top is None else Path(top), real_root)]
    found: list[str] = []
    while stack:
        folder, rel, real_folder, above = stack.pop()
        for e in _entries(folder):
            if skipped(e.name):
                continue
            check_name(e.path)
            name = f"{rel}/{e.name}" if rel else e.name
            sub = _visit(e, name, real_folder, above, root, real_root)
            if sub is None:
                found.append(name)
            else:
                stack.append(sub)
    return found


def _first_folder(root: Path, top: Path, real_root: str) -> _Folder:
    """The walk's starting folder ``top``; refused when its name is not UTF-8 or it leads out of ``root``."""
    real_top = os.path.realpath(top)
    check_name(top)
    if not _inside(real_top, real_root):
        raise DataError(
            f"{display(top)}: leads to {display(real_top)}, outside the data folder "
            f"{display(root)}; copy the files into it rather than linking out of it"
        )
    rel_top = top.relative_to(root).as_posix()
    top_above = frozenset({real_root, real_top, *(os.path.realpath(root / q) for q in Path(rel_top).parents)})
    return (str(top), "" if rel_top == "." else rel_top, real_top, top_above)


def _entries(folder: str) -> list[os.DirEntry]:
    """The entries of ``folder``; a folder that cannot be listed is a ``DataError`` naming it."""
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError as exc:
        raise DataError(f"{display(folder)}: cannot list the folder ({exc.strerror or exc})") from exc


def _visit(
    e: os.DirEntry, name: str, real_folder: str, above: frozenset[str], root: Path, real_root: str
) -> _Folder | None:
    """The folder to walk for a folder entry ``e`` (a link to one followed), or None for a data file;
    raises ``DataError`` for anything else (a special file, a link out of ``root``, broken or in a loop)."""
    if e.is_symlink():
        real = os.path.realpath(e.path)
        mode = _link_mode(e, real, root, real_root)
        if stat.S_ISDIR(mode):
            if real in above:
                raise DataError(
                    f"{display(e.path)}: symbolic link loop (it leads back to "
                    f"{display(real)}, a folder above it); remove the link"
                )
            return (e.path, name, real, above | {real})
        if stat.S_ISREG(mode):
            return None
        raise _not_regular(display(e.path), mode)
    if e.is_dir(follow_symlinks=False):
        real = os.path.join(real_folder, e.name)
        return (e.path, name, real, above | {real})
    if e.is_file(follow_symlinks=False):
        return None
    raise _not_regular(display(e.path), e.stat(follow_symlinks=False).st_mode)


def _link_mode(e: os.DirEntry, real: str, root: Path, real_root: str) -> int:
    """The mode of what the symbolic link ``e`` leads to (``real``); refused out of ``root`` or broken."""
    if not _inside(real, real_root):
        raise DataError(
            f"{display(e.path)}: symbolic link to {display(real)}, outside the data "
            f"folder {display(root)}; copy the files into it rather than linking out"
        )
    try:
        return os.stat(e.path).st_mode
    except OSError as exc:
        raise DataError(
            f"{display(e.path)}: broken symbolic link ({exc.strerror or exc}); "
            "remove it or restore its target"
        ) from exc


def read_regular(
    path: str | os.PathLike, where: str, *, limit: int | None = None, max_bytes: int | None = None
) -> bytes:
    """The bytes of the regular file ``path`` (its first ``limit`` when given), named ``where`` in errors.
    Anything else (a FIFO, a device) and, with ``max_bytes``, a file larger than that are refused before a
    byte is read, whether or not ``limit`` asks for less (a header check refuses what training would)."""
    try:
        mode = os.stat(path).st_mode  # before opening: opening a device can itself do something
        if not stat.S_ISREG(mode):
            raise _not_regular(where, mode)
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise DataError(f"{where}: cannot read ({exc.strerror or exc})") from exc
    with open(fd, "rb", closefd=True) as f:
        try:
            st = os.fstat(fd)  # the file actually opened, should the name have changed since the stat
            if not stat.S_ISREG(st.st_mode):
                raise _not_regular(where, st.st_mode)
            if max_bytes is not None and st.st_size > max_bytes:
                raise DataError(
                    f"{where}: file is {st.st_size:,} bytes; files above {max_bytes:,} bytes "
                    f"({max_bytes / 2**20:.0f} MiB) are refused before reading"
                )
            return f.read(st.st_size if limit is None else min(limit, st.st_size))
        except OSError as exc:
            raise DataError(f"{where}: cannot read ({exc.strerror or exc})") from exc
