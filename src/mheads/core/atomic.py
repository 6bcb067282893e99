"""Crash-safe file writes: a reader sees the old file or the new one, never a torn mix.

The recipe is the classic one (write a temporary file in the same folder, flush, fsync, `os.replace`,
fsync the folder). The temporary file must live in the target's folder because `os.replace` is
atomic only within one file system, and the folder fsync is what makes the rename itself survive a
power cut, not just the file's bytes.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

__all__ = [
    "OutputError",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
    "os_reason",
    "write_durable",
]


class OutputError(ValueError):
    """Writing an output failed (full disk, no permission, ...); names the path and the OS error."""


def os_reason(exc: OSError) -> str:
    """One-line OS error text, e.g. "[Errno 28] No space left on device" (no file name: callers add it)."""
    if exc.errno is not None:
        return f"[Errno {exc.errno}] {exc.strerror or os.strerror(exc.errno)}"
    return str(exc) or type(exc).__name__


def write_durable(path: str | os.PathLike, data: bytes) -> None:
    """Create `path` (it must not exist), write all of `data`, fsync it.

    Not atomic by itself: for files inside a folder that is renamed into place afterwards.
    Raises OSError; on failure the partial file is removed.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    # 0o666 so the umask decides the mode, as for any file the user creates (mkstemp would force 0o600).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        view = memoryview(data).cast("B")
        while view:
            written = os.write(fd, view)
            if written <= 0:  # a regular file never does this unless the device misbehaves
                raise OSError(errno.EIO, "write made no progress")
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    os.close(fd)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make renames and creations inside `folder` durable. Raises OSError."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` by `data` atomically and durably.

    On any failure the old file (if any) is untouched, the temporary file is removed, and
    `OutputError` is raised naming `path` and the OS error.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write_durable(tmp, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        fsync_dir(path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {os_reason(exc)}") from exc


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """`atomic_write_bytes` for text (UTF-8 by default)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    atomic_write_bytes(path, text.encode(encoding))


def _unlink_quietly(path: str | os.PathLike) -> None:
    # Cleanup after a failure must not mask the original error.
    try:
        os.unlink(path)
    except OSError:
        pass
