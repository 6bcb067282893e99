"""A streaming loader's worker processes failing: one died (the out-of-memory killer, a signal sent to it
alone) or sent no batch for the loader's timeout (stopped, hung). Each ends the run with one line,
:class:`StreamWorkerError` (exit 2), instead of a DataLoader traceback or a wait without end; see
:mod:`mheads.data.streaming`."""

from __future__ import annotations

import re
import time
from contextlib import contextmanager

from mheads.data.errors import DataError

__all__ = ["WAIT_SLICE_S", "StreamWorkerError", "fetch_batch", "worker_errors", "worker_failure"]

WAIT_SLICE_S = 0.5  # a dead worker is noticed within this long while waiting for a batch, SIGCHLD or not
_TIMED_OUT = "DataLoader timed out after"


class StreamWorkerError(DataError):
    """A DataLoader worker died (the out-of-memory killer, a signal sent to it alone) or sent nothing for
    ``mheads.data.streaming.WORKER_TIMEOUT_S`` (stopped or hung). Bad input in the sense of the exit codes
    (2): the machine could not run the workers the config asks for; the run folder stays resumable."""


def worker_failure(err: BaseException) -> StreamWorkerError | None:
    """The one-line error for a DataLoader's worker-failure ``RuntimeError`` (raised where the main process
    waits for a batch, or by torch's SIGCHLD handler anywhere in it), or None for any other error."""
    msg = " ".join(str(err).split())
    if not isinstance(err, RuntimeError):
        return None
    if msg.startswith(_TIMED_OUT):
        return StreamWorkerError(
            f"data.workers: no batch came from the worker processes for {msg.split('after ')[1].rstrip('.')} "
            "(a worker is stopped or hung); they were ended: resume the run (mheads train --resume) once "
            "they can run, or set data.workers: 0 to decode in the training process"
        )
    found = re.match(r"DataLoader worker \(pid(?:\(s\))? ([\d, ]+)\) (.*)", msg)
    if found:
        pids, how = found.group(1), found.group(2).split(". ")[0].rstrip(".")
        return StreamWorkerError(
            f"data.workers: worker process {pids} {how} (the out-of-memory killer ends processes with "
            "SIGKILL); resume the run (mheads train --resume), with fewer data.workers or a smaller "
            "train.batch_size if memory is short"
        )
    return None


@contextmanager
def worker_errors():
    """Turn a DataLoader worker failure raised anywhere inside into :class:`StreamWorkerError`."""
    try:
        yield
    except RuntimeError as err:
        failure = worker_failure(err)
        if failure is None:
            raise
        raise failure from None


def _stop_workers(it) -> None:
    """End the workers of a DataLoader iterator that timed out with SIGKILL, the one signal a stopped process
    obeys (left alive, one would hang this process's exit: Python joins its child processes). They are
    first taken off torch's list of workers whose death is an error. This reaches into the iterator's
    private state, each step guarded: where it is not there (another torch), only the exit can hang."""
    workers = list(getattr(it, "_workers", ()))
    if getattr(it, "_worker_pids_set", False):
        from torch.utils.data._utils import signal_handling

        signal_handling._remove_worker_pids(id(it))
        it._worker_pids_set = False
    for w in workers:
        if w.is_alive():
            w.kill()
    for w in workers:
        w.join(timeout=5)
    shutdown = getattr(it, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def fetch_batch(it):
    """The next batch of ``it``; a worker failure as :class:`StreamWorkerError` (workers that timed out are
    ended first)."""
    try:
        return _next_in_slices(it)
    except RuntimeError as err:
        failure = worker_failure(err)
        if failure is None:
            raise
        if "no batch came" in str(failure):
            _stop_workers(it)
        raise failure from None


def _next_in_slices(it):
    """``next(it)``, waiting at most the iterator's timeout in slices of ``WAIT_SLICE_S``.

    torch waits with one ``poll`` for the whole DataLoader timeout and learns of a dead worker only through
    SIGCHLD, whose handler raises its error wherever this process happens to be: swallowed there (a broad
    ``except``, a finalizer) or landing just before the ``poll``, it leaves the wait to run out the whole
    timeout (600 s). At the end of each slice torch checks that its workers are alive instead ("exited
    unexpectedly"); a slice that ran out leaves the iterator as it was. The timeout is the iterator's private
    ``_timeout``: where it is not there (another torch), the wait is torch's own."""
    budget = getattr(it, "_timeout", 0)
    if not isinstance(budget, (int, float)) or budget <= WAIT_SLICE_S:
        return next(it)
    deadline = time.monotonic() + budget
    try:
        while (left := deadline - time.monotonic()) > 0:
            it._timeout = min(WAIT_SLICE_S, left)
            try:
                return next(it)
            except RuntimeError as err:
                if not str(err).startswith(_TIMED_OUT):
                    raise
        raise RuntimeError(f"{_TIMED_OUT} {budget} seconds")  # torch's words, with the whole timeout
    finally:
        it._timeout = budget
