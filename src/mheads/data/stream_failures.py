"""A streaming loader's worker processes failing: one died (the out-of-memory killer, a signal sent to it
alone) or sent no batch for the loader's timeout (stopped, hung). Each ends the run with one line,
:class:`StreamWorkerError` (exit 2), instead of a DataLoader traceback or a wait without end; see
:mod:`mheads.data.streaming`."""

from __future__ import annotations

import re
from contextlib import contextmanager

from mheads.data.errors import DataError

__all__ = ["StreamWorkerError", "fetch_batch", "worker_errors", "worker_failure"]


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
    if msg.startswith("DataLoader timed out after"):
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
        return next(it)
    except RuntimeError as err:
        failure = worker_failure(err)
        if failure is None:
            raise
        if "no batch came" in str(failure):
            _stop_workers(it)
        raise failure from None
