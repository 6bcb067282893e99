"""Preemption: SIGTERM ends a run after the current iteration with a checkpoint, and the exit code that says
so."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PREEMPTED_EXIT_CODE", "Preempted", "sigterm_flag"]

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: a checkpoint was written on SIGTERM; rerun with --resume


class Preempted(Exception):
    """SIGTERM arrived; the run saved a checkpoint at ``step`` and stopped."""

    def __init__(self, step: int, out: Path):
        self.step, self.out = step, out
        super().__init__(
            f"preempted (SIGTERM) at iteration {step}; checkpoint written; continue with "
            f"`mheads train --resume {out}`"
        )


@contextmanager
def sigterm_flag():
    """A dict whose ``"hit"`` turns True when SIGTERM arrives (the previous handler is restored on exit)."""
    state = {"hit": False}

    def handler(signum, frame):
        state["hit"] = True

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: no preemption handling
        yield state
        return
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)
