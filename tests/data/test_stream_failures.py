"""A DataLoader worker's death ends the wait for a batch within a bounded time, even when torch's SIGCHLD
handler never raises (its error swallowed by a broad ``except`` or a finalizer, or the signal landing just
before the wait's ``poll``): torch's own wait with a timeout is one ``poll`` for the whole timeout."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch

from mheads.data.stream_failures import WAIT_SLICE_S, StreamWorkerError, fetch_batch

pytestmark = [
    pytest.mark.skipif(not hasattr(signal, "SIGCHLD"), reason="POSIX child signals"),
    pytest.mark.timeout(60),  # a regression fails here instead of holding the run for pytest's 300 s
]


class Dies(torch.utils.data.Dataset):
    """Its worker SIGKILLs itself at the first item it reads (the OOM killer)."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        os.kill(os.getpid(), signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True  # no /proc (or already reaped): dead either way


def test_a_dead_worker_whose_sigchld_went_unnoticed_ends_the_wait_within_a_slice():
    timeout = 20.0
    loader = torch.utils.data.DataLoader(Dies(), batch_size=2, num_workers=1, timeout=timeout)
    it = iter(loader)  # installs torch's SIGCHLD handler (once per process)
    torch_handler = signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the death goes unnoticed
    try:
        pid = it._workers[0].pid
        deadline = time.monotonic() + 10
        while not _zombie(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _zombie(pid), "the worker did not die"
    finally:
        signal.signal(signal.SIGCHLD, torch_handler)
    t0 = time.monotonic()
    try:
        with pytest.raises(StreamWorkerError, match=rf"^data.workers: worker process {pid} exited unexpect"):
            fetch_batch(it)
        assert time.monotonic() - t0 < WAIT_SLICE_S + 5 < timeout  # not the whole timeout
        assert it._timeout == timeout  # the iterator's own timeout is left as it was
    finally:
        it._shutdown_workers()


class _Borrowed:
    """A stand-in for a DataLoader iterator: its private ``_timeout`` and a scripted outcome per ``next``
    (a value, or an exception raised as a slice's wait ends); records the timeout each ``next`` saw."""

    def __init__(self, *outcomes):
        self._timeout, self.outcomes, self.seen = 3.0, list(outcomes), []

    def __next__(self):
        self.seen.append(self._timeout)
        out = self.outcomes.pop(0)
        if isinstance(out, BaseException):
            raise out
        return out


@pytest.mark.parametrize(
    "ending", [StopIteration(), KeyboardInterrupt(), RuntimeError("DataLoader worker (pid 7) x")]
)
def test_the_borrowed_timeout_is_given_back_however_the_wait_ends(ending):
    """Each slice waits ``WAIT_SLICE_S`` at most; the iterator's own timeout is back after a batch, the end of
    the epoch (StopIteration, persistent workers reuse the iterator), Ctrl-C or a dead worker."""
    sliced = RuntimeError(f"DataLoader timed out after {WAIT_SLICE_S} seconds")
    it = _Borrowed(sliced, "batch")
    assert fetch_batch(it) == "batch"
    assert it.seen == [WAIT_SLICE_S, WAIT_SLICE_S] and it._timeout == 3.0
    it = _Borrowed(sliced, ending)
    with pytest.raises((type(ending), StreamWorkerError)):
        fetch_batch(it)
    assert it._timeout == 3.0
