"""One process per run folder: an exclusive advisory lock held for the run's lifetime.

Two ``mheads train`` on one ``--out`` would rewrite each other's ``config.yaml`` and ``run.json`` and delete
each other's temporary checkpoints. The first process takes ``flock`` on ``<out>/.mheads.lock`` and keeps it
until it ends; a second one is refused at once, naming the holder. The operating system releases the lock when
the holder dies, however it dies, so a SIGKILLed run can be resumed right away. A ``flock`` belongs to the
open file, which forked children share: processes forked while the lock is held (DataLoader workers) close
their copy at once, so workers outliving a killed run by a few seconds do not keep its folder locked.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time
from pathlib import Path

from mheads.runs.entries import LOCK_FILE
from mheads.runs.folder import RunExistsError

__all__ = ["LOCK_FILE", "RunLock", "RunLockedError"]

_NOT_OWN = (
    "{path}: is {what}; a run folder's lock must be its own regular file (nothing outside the folder is "
    "written): remove it and run again"
)

_HELD: set[int] = set()  # lock descriptors this process holds


def _close_in_child() -> None:
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class RunLockedError(RunExistsError):
    """Another live process holds the run folder."""


class RunLock:
    """``with RunLock(out):`` holds ``out``'s lock (creating ``out`` when ``create``); raises
    :class:`RunLockedError` when another process holds it."""

    def __init__(self, out: str | os.PathLike, *, create: bool = True):
        self.out, self.create = Path(out), create
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        if self.out.exists() and not self.out.is_dir():
            return self  # not a folder: the run's own checks name the problem
        path = self.out / LOCK_FILE
        try:
            if not self.out.is_dir():
                if not self.create:
                    return self
                self.out.mkdir(parents=True, exist_ok=True)
            # never through a link: a handed-over folder's lock linked to a file elsewhere would be truncated
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise RunExistsError(_NOT_OWN.format(path=path, what="a symbolic link")) from None
            return self  # a folder that cannot be made or written holds no run: the run's own checks say why
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunExistsError(_NOT_OWN.format(path=path, what="not a regular file"))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(path)
            os.close(fd)
            raise RunLockedError(
                f"--out {self.out}: another mheads process is using this run folder "
                f"({holder}); wait for it to end, or choose another --out"
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
        self._fd = fd
        _HELD.add(fd)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            _HELD.discard(self._fd)
            os.close(self._fd)  # closing releases the lock; the file stays (another process may hold it next)
            self._fd = None


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its details could not be read"
