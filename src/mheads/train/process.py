"""What a run changes in its process, and gives back: the global random state, torch's thread count, and
(only where the caller asks, as the command line does) glibc's malloc thresholds.

The loop seeds the global generator at every step (``Stream.STEP``: dropout and any other op that can only
draw globally), so that a resumed run draws what an uninterrupted one would. Inside
:func:`torch.random.fork_rng` that seeding stays the run's own: the caller's generator state (CPU, and the
training device's on CUDA) is as it was before the run, and the run's numbers are those of a process that
started just for it.

glibc offers no way to read its malloc thresholds back, so raising them (:mod:`mheads.train.allocator`) cannot
be undone; ``mheads.fit`` therefore leaves them alone (call ``retain_freed_memory()`` yourself for the CPU
speed it buys), and ``mheads train`` raises them for its own process.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from mheads.train.allocator import retain_freed_memory

__all__ = ["run_process_state"]


@contextmanager
def run_process_state(device: torch.device, threads: int | None, retain_memory: bool):
    """For the length of a run: its own global random state (forked, restored on exit), ``threads``
    (``train.threads``; restored on exit) and, with ``retain_memory`` on a CPU run, glibc's raised malloc
    thresholds (kept: see the module docstring)."""
    before = torch.get_num_threads()
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else []
    )
    with torch.random.fork_rng(devices=devices):
        try:
            if threads:
                torch.set_num_threads(threads)
            if retain_memory and device.type == "cpu":
                # Keep freed memory in the process: without it the first hundreds of CPU steps fault their
                # activation buffers back in page by page (20-40% slower); the benchmarks measure with it.
                retain_freed_memory()
            yield
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)
