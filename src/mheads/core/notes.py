"""Informational log lines a command says once. A note that repeats word for word on every run a command
trains (``mheads demo``'s cells, a sweep's: "no held-out split") is logged with ``extra=ONCE``; the command
line runs each command inside :func:`once_per_command`, which lets each such line through the ``mheads``
logger once. Called from Python (``mheads.fit`` twice), every run still says it. Only INFO and below are
ever dropped: a warning is said every time, marked or not."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["ONCE", "once_per_command"]

ONCE = {"once_per_command": True}  # `extra=` of a purely informational note


class _SayOnce(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "once_per_command", False) or record.levelno > logging.INFO:
            return True
        text = record.getMessage()
        if text in self.said:
            return False
        self.said.add(text)
        return True


@contextlib.contextmanager
def once_per_command(logger: str = "mheads") -> Iterator[None]:
    """While it runs, each note logged with ``extra=ONCE`` on ``logger`` is said once. On ``logger`` itself
    (``logging.getLogger("mheads")``, as every marked note is): a logger's filter never sees the records of
    its children (``mheads.data``), which would be said every time."""
    said = _SayOnce()
    log = logging.getLogger(logger)
    log.addFilter(said)
    try:
        yield
    finally:
        log.removeFilter(said)
