"""The worker side of streamed data (``mheads.data.streaming``): what a DataLoader worker process makes of
one key ``(index, batch, position)`` (decode, label check, the geometric view), how a batch of those is
collated, the batch sampler that yields a plan's batches as such keys, and the workers' signal handling.

Signals: a scheduler's SIGTERM (``timeout``, Slurm, systemd) reaches every process of the job, the workers
too. The training process decides what it means (finish the iteration, checkpoint, exit 75) and ends its
workers itself, so a worker ignores SIGTERM and SIGINT from anyone but its parent (:func:`worker_init`), and
the parent holds both while it starts workers (:func:`workers_shielded`), so that none arrives in the moment
before a worker has set that up.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from mheads.core.seeding import Stream, derive_seed
from mheads.data.batching import BatchPlan, shard_rows
from mheads.data.errors import DataError
from mheads.data.transforms import eval_view, random_crop, random_resized_crop, to_tensor

__all__ = ["Examples", "TrainKeys", "View", "collate", "default_workers", "worker_init", "workers_shielded"]

_MAX_SUBSTITUTES = 64  # on_bad_image: skip tries this many following examples before giving up
_SHIELDED = {signal.SIGTERM, signal.SIGINT}


@dataclass(frozen=True)
class View:
    """What a worker makes of one decoded image."""

    size: int
    channels: int
    resize: int  # evaluation view: shorter side before the centre crop
    train_crop: str  # data.train_crop: pad (the evaluation view) | random | random_resized
    crop_scale: tuple[float, float]
    seed: int
    num_classes: int


class Examples(torch.utils.data.Dataset):
    """Worker side: key ``(i, b, pos)`` (``b < 0``: an evaluation view) to ``(image, label, index, skipped,
    error)``."""

    def __init__(
        self,
        source,
        view: View,
        skip: bool,
        indices: np.ndarray,
        relabel: np.ndarray | None,
        source_classes: int,
    ):
        self.source, self.view, self.skip = source, view, skip
        self.indices, self.relabel, self.source_classes = (
            np.asarray(indices, np.int64),
            relabel,
            source_classes,
        )
        self.n = len(self.indices)

    def __len__(self) -> int:
        return self.n

    def _one(self, j: int, b: int, pos: int):
        v = self.view
        src = int(self.indices[j])
        img, y = self.source.load(src, v.channels)
        if not 0 <= y < self.source_classes:
            raise DataError(
                f"{self.source.where(src)}: label {y} is outside the class range 0..{self.source_classes - 1}"
            )
        if self.relabel is not None:
            y = int(self.relabel[y])
        if b >= 0 and v.train_crop != "pad":
            rng = np.random.default_rng(derive_seed(v.seed, Stream.CROP, b, pos))
            if v.train_crop == "random":
                img = random_crop(img, v.size, v.resize, rng)
            else:
                img = random_resized_crop(img, v.size, rng, v.crop_scale)
        else:
            img = eval_view(img, v.size, v.resize)
        return to_tensor(img), y

    def __getitem__(self, key):
        i, b, pos = key
        error = ""
        for attempt in range(_MAX_SUBSTITUTES if self.skip else 1):
            j = (i + attempt) % self.n
            try:
                x, y = self._one(j, b, pos)
                return x, y, j, attempt, ""
            except DataError as err:
                error = str(err)
        if self.skip:
            error = f"{error} (and the {_MAX_SUBSTITUTES - 1} examples after it are unreadable too)"
        return None, -1, i, 0, error


def collate(items):
    for item in items:
        if item[4]:
            return item[4]
    return (
        torch.stack([it[0] for it in items]),
        torch.tensor([it[1] for it in items], dtype=torch.int64),
        torch.tensor([it[2] for it in items], dtype=torch.int64),
        sum(it[3] for it in items),
    )


class TrainKeys:
    """Batch sampler: batches ``start .. stop - 1`` of the plan, each a list of ``(index, b, position)`` (the
    rows of a data-parallel replica's ``shard`` only, keeping their positions in the whole batch)."""

    def __init__(self, plan: BatchPlan, start: int, stop: int, shard: tuple[int, int] | None = None):
        self.plan, self.start, self.stop = plan, start, stop
        self.rows = shard_rows(shard, plan.batch_size)

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self):
        for b in range(self.start, self.stop):
            yield [(int(i), b, p) for p, i in enumerate(self.plan.indices(b).tolist())][self.rows]


def default_workers(requested: int | None) -> int:
    """``data.workers``, or the cores the training threads leave (at least one)."""
    if requested is not None:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - torch.get_num_threads())


@contextmanager
def workers_shielded():
    """Hold SIGTERM and SIGINT in this thread while DataLoader workers are started: a forked worker starts
    with them blocked (the signal mask is inherited), so a signal sent to the whole group then waits for
    :func:`worker_init` instead of killing the worker. This process gets any that arrived once it leaves."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SHIELDED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_init(worker_id: int) -> None:
    """``worker_init_fn`` of every streaming DataLoader: SIGTERM and SIGINT stay blocked in the worker and a
    thread takes them; one sent by the parent (the DataLoader ending a worker that did not stop when asked)
    ends the worker, any other (a group or job-wide signal) is ignored: the parent decides.

    Its batches reach the parent through named shared memory ("file_system"), not by passing a descriptor:
    receiving a descriptor needs the sending worker to answer, so a batch already queued by a worker that was
    then stopped would hang the parent where no DataLoader timeout reaches."""
    torch.multiprocessing.set_sharing_strategy("file_system")  # this worker process only
    if not hasattr(signal, "sigwaitinfo"):  # no siginfo here (macOS): ignore both outright
        for sig in _SHIELDED:
            signal.signal(sig, signal.SIG_IGN)
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, _SHIELDED)  # threads started from here on inherit it
    parent = os.getppid()

    def take() -> None:
        while True:
            if signal.sigwaitinfo(_SHIELDED).si_pid == parent:
                os._exit(0)

    threading.Thread(target=take, name="mheads-worker-signals", daemon=True).start()
