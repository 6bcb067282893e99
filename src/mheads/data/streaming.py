"""Streamed training data: DataLoader worker processes decode image files per batch, for data sets larger
than memory or with images of any size (``data.loader: stream``).

The training process sees the same interface as :class:`~mheads.data.resident.ResidentData`
(``train_batch(b, generator)``, ``eval_batches``), and batch ``b`` is made the same way: its examples are
``BatchPlan.indices(b)``, so which examples form a batch is a function of the seed and ``b`` and the order
workers finish in does not matter (the DataLoader hands batches back in sampler order). Workers decode, take
the geometric view (``mheads.data.transforms``; a random-resized crop draws from a generator seeded by the
run seed, ``b`` and the example's place in the batch) and send uint8 tensors; normalization, pad-and-crop and
flips then run on the training device with the batch generator, exactly as for resident data. Hence:

- a run killed at any moment and resumed ends bit-identical to an uninterrupted one, with any number of
  workers (resuming at iteration ``i`` starts the sampler at batch ``i``);
- a set of fixed-size images streamed with ``train_crop: pad`` gives the very batches (and so the very
  weights) the resident loader gives.

Normalization statistics are exact integer sums over the training images' evaluation view (all of them up
to ``data.stats_images``, else a seeded sample), computed by the workers before training starts.

Bad files: before training, every file's size and header are checked and a bad one stops the run (exit 2)
naming it; a training image that still fails to decode during training stops it too, or with
``data.on_bad_image: skip`` is replaced by the next readable example in index order (deterministic, so resume
stays exact) and counted (``skipped_images`` in the metrics). An image of a scored split (test, val, ood) is
never replaced: the run's evaluations score every image once, as ``mheads eval`` does, so one that fails to
decode stops the run whatever ``on_bad_image`` says (a replacement would be scored twice). The one-line error
ends with what the reader can do (:meth:`StreamData.advice`): training's names ``data.on_bad_image`` for a
training image, removing or replacing the file for a scored one; ``mheads eval`` passes its own.

Workers: they ignore SIGTERM and SIGINT (the training process decides: a checkpoint, then exit 75; see
:mod:`mheads.data.stream_worker`). A worker that dies (the out-of-memory killer) or sends no batch for
``WORKER_TIMEOUT_S`` (stopped, hung) ends the run with one line (:class:`StreamWorkerError`, exit 2) instead
of a DataLoader traceback or a wait without end; the run resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from mheads.config import Config, DataConfig
from mheads.data.batching import BatchPlan, shard_rows
from mheads.data.errors import DataError
from mheads.data.index import StreamIndex
from mheads.data.member_weights import member_weights
from mheads.data.preprocess import Normalizer, augment
from mheads.data.stream_failures import StreamWorkerError, fetch_batch, worker_errors
from mheads.data.stream_sources import (
    Chosen,
    Sources,
    choose_examples,
    dataset_sources,
    index_sources,
    run_labels,
)
from mheads.data.stream_stats import fit_normalizer, image_channels, native_size
from mheads.data.stream_worker import (
    Examples,
    TrainKeys,
    View,
    collate,
    default_workers,
    worker_init,
    workers_shielded,
)

__all__ = [
    "TRAIN_ADVICE",
    "WORKER_TIMEOUT_S",
    "Sources",
    "StreamData",
    "StreamWorkerError",
    "dataset_sources",
    "default_workers",
    "index_sources",
    "prepare_stream",
    "scored_split_advice",
    "stream_data",
    "worker_errors",
]

log = logging.getLogger(__name__)

PREFETCH = 4  # batches each worker decodes ahead
TRAIN_ADVICE = "set data.on_bad_image: skip to train past unreadable images"
WORKER_TIMEOUT_S = 600.0  # no batch from the workers for this long: one is stopped or hung


def scored_split_advice(split: str) -> str:
    """What a training run can do about an image of a scored ``split`` (test, val, ood) that fails to decode:
    its evaluations score every image, so ``data.on_bad_image: skip`` never replaces one."""
    return (
        f"remove or replace it: the run's evaluation scores every image of the {split} split "
        "(data.on_bad_image: skip replaces training images only)"
    )


@dataclass
class StreamData:
    """Training data decoded per batch by DataLoader workers; the interface of ``ResidentData``."""

    device: torch.device
    classes: list[str]
    train_set: Examples
    test_set: Examples
    val_set: Examples | None
    ood_set: Examples | None
    normalizer: Normalizer
    plan: BatchPlan
    weights: torch.Tensor | None
    crop_padding: int
    flip: bool
    memory_format: torch.memory_format
    source: str
    workers: int
    total_batches: int
    wait_s: float = 0.0  # seconds the training process waited for batches
    skipped_images: int = 0
    image_size_set: bool = True  # data.image_size was given (False: the images' own size)
    shard: tuple[int, int] | None = None  # (replica, replicas): read only this replica's rows of each batch
    timeout_s: float = WORKER_TIMEOUT_S  # waiting longer for a batch from the workers is an error
    bad_image_advice: str | None = None  # what a bad image's error ends with (None: see advice())
    _iter: Iterator | None = field(default=None, repr=False)
    _next: int = -1

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.train_set.view.channels

    @property
    def image_size(self) -> int:
        return self.train_set.view.size

    @property
    def queued_batches(self) -> int:
        """Batches the workers decode ahead of the one in use (what the resource check counts)."""
        return self.workers * PREFETCH

    def _start(self, dataset, batches) -> Iterator:
        """An iterator over ``batches`` of ``dataset``, its workers started (see the module docstring)."""
        loader = DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=self.workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=PREFETCH if self.workers else None,
            worker_init_fn=worker_init if self.workers else None,
            timeout=self.timeout_s if self.workers else 0,
        )
        with workers_shielded():
            return iter(loader)

    def advice(self, split: str) -> str:
        """What the error of an image of ``split`` that fails to decode ends with: ``bad_image_advice`` where
        the caller gave one (``mheads eval``), else training's: ``data.on_bad_image`` for a training image,
        removing or replacing the file for an image of a scored split (never skipped)."""
        if self.bad_image_advice is not None:
            return self.bad_image_advice
        return TRAIN_ADVICE if split == "train" else scored_split_advice(split)

    def _next_batch(self, it: Iterator, split: str = "train"):
        t0 = time.perf_counter()
        batch = fetch_batch(it)
        self.wait_s += time.perf_counter() - t0
        if isinstance(batch, str):
            raise DataError(f"{batch}; {self.advice(split)}")
        x, y, idx, skipped = batch
        self.skipped_images += skipped
        return x, y, idx

    def train_batch(self, b: int, generator: torch.Generator):
        """Batch ``b``: (x (B, C, H, W) float, y (B,), per-member weights (M, B) or None)."""
        if self._iter is None or b != self._next:
            self.close()
            self._iter = self._start(
                self.train_set, TrainKeys(self.plan, b, max(self.total_batches, b + 1), self.shard)
            )
        x, y, idx = self._next_batch(self._iter)
        self._next = b + 1
        x = self.normalizer(x.to(self.device, non_blocking=True))
        if self.crop_padding or self.flip:
            start = shard_rows(self.shard, self.plan.batch_size).start
            x = augment(x, generator, self.crop_padding, self.flip, shard=(start, self.plan.batch_size))
        x = x.contiguous(memory_format=self.memory_format)
        idx = idx.to(self.device, non_blocking=True)  # pinned on CUDA: no wait for the queued kernels
        w = self.weights[:, idx] if self.weights is not None else None
        return x, y.to(self.device, non_blocking=True), w

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ds = {"test": self.test_set, "train": self.train_set, "val": self.val_set, "ood": self.ood_set}[split]
        if ds is None:
            return
        batches = [
            [(i, -1, 0) for i in range(s, min(s + batch_size, ds.n))] for s in range(0, ds.n, batch_size)
        ]
        it = self._start(ds, batches)
        for _ in batches:
            x, y, _ = self._next_batch(it, split)
            x = self.normalizer(x.to(self.device, non_blocking=True)).contiguous(
                memory_format=self.memory_format
            )
            yield x, y.to(self.device)

    def split_size(self, split: str) -> int:
        """Examples in ``split`` ("train", "test", "val" or "ood"; 0 for a split the run does not have)."""
        ds = {"test": self.test_set, "train": self.train_set, "val": self.val_set, "ood": self.ood_set}[split]
        return 0 if ds is None else ds.n

    def close(self) -> None:
        """Stop the training batches' workers (a new iterator starts them again)."""
        self._iter, self._next = None, -1

    def describe(self) -> dict:
        return {
            "source": self.source,
            "classes": self.classes,
            "train": self.train_set.n,
            "test": self.test_set.n,
            "image_shape": [self.in_channels, self.image_size, self.image_size],
            "loader": "stream",
            "workers": self.workers,
            **{split: self.split_size(split) for split in ("val", "ood") if self.split_size(split)},
        }


def prepare_stream(
    cfg: Config,
    device: torch.device,
    index: StreamIndex | None = None,
    *,
    train=None,
    test=None,
    sources: Sources | None = None,
    progress: bool = False,
    bad_image_advice: str | None = None,
) -> StreamData:
    """The streamed data ``cfg.data`` describes: from an index of files (``index``), from a user's torch
    Datasets (``train``, ``test``; ``test=None`` evaluates on ``train``), or from ``sources`` already built.
    The run config's adapter to :func:`stream_data` (``bad_image_advice`` passed on)."""
    d, t = cfg.data, cfg.train
    if sources is None and index is not None:
        sources = index_sources(index, str(d.source), d.on_bad_image, progress)
    elif sources is None:
        sources = dataset_sources(train, test, progress)
    return stream_data(
        sources,
        d,
        device,
        members=cfg.model.members,
        seed=t.seed,
        batch_size=t.batch_size,
        total_batches=t.iterations * t.accumulate,
        channels_last=t.channels_last,
        progress=progress,
        bad_image_advice=bad_image_advice,
    )


def stream_data(
    sources: Sources,
    data: DataConfig,
    device: torch.device,
    *,
    members: int,
    seed: int,
    batch_size: int,
    total_batches: int,
    channels_last: bool,
    progress: bool = False,
    bad_image_advice: str | None = None,
) -> StreamData:
    """``sources`` streamed to ``device`` as the ``data`` section says (classes, limits, validation split,
    image view, normalization, augmentation, bagging, specialists, workers) for ``members`` members:
    ``total_batches`` batches of ``batch_size`` in an order, and subsets, seeded by ``seed``.
    ``bad_image_advice``: what the error of an image that fails to decode ends with (``mheads eval`` passes
    its own: it cannot set ``data.on_bad_image``; None: training's, :meth:`StreamData.advice`)."""
    chosen = choose_examples(sources, data, seed)
    view = _view(sources.train, chosen.train, data, seed, len(chosen.classes))
    stream = _unfitted(sources, chosen, view, data, device, seed, batch_size, total_batches, channels_last)
    stream.bad_image_advice = bad_image_advice
    mode = data.image_normalize
    normalizer = fit_normalizer(stream, stream.train_set, mode, data.stats_images, seed, progress)
    stream.normalizer = normalizer.to(device)
    weights = member_weights(
        len(chosen.train),
        len(chosen.classes),
        members,
        seed,
        data.bagging,
        data.label_split,
        labels=lambda: run_labels(sources, chosen),
    )
    stream.weights = weights.to(device) if weights is not None else None
    log.info(
        "streaming %s: %d train / %d test images at %dx%d, %d workers",
        sources.where,
        len(chosen.train),
        len(chosen.test),
        view.size,
        view.size,
        stream.workers,
    )
    return stream


def _unfitted(
    sources: Sources,
    chosen: Chosen,
    view: View,
    data: DataConfig,
    device: torch.device,
    seed: int,
    batch_size: int,
    total_batches: int,
    channels_last: bool,
) -> StreamData:
    """The stream of the ``chosen`` examples, before its normalizer (identity until fitted) and per-member
    weights are set."""
    train_set, test_set, val_set, ood_set = _example_sets(sources, chosen, view, data.on_bad_image == "skip")
    return StreamData(
        device=device,
        classes=chosen.classes,
        train_set=train_set,
        test_set=test_set,
        val_set=val_set,
        ood_set=ood_set,
        normalizer=Normalizer("none", torch.tensor(0.0), torch.tensor(1.0)),
        plan=BatchPlan(len(chosen.train), batch_size, seed),
        weights=None,
        crop_padding=data.crop_padding,
        flip=data.flip,
        memory_format=torch.channels_last if channels_last else torch.contiguous_format,
        source=sources.where,
        workers=default_workers(data.workers),
        total_batches=total_batches,
        image_size_set=data.image_size is not None,
        timeout_s=WORKER_TIMEOUT_S,  # read when called: a test shortens it
    )


def _view(source, train: np.ndarray, data: DataConfig, seed: int, num_classes: int) -> View:
    """What the workers make of each image: its side (``data.image_size``, else the training images' own),
    its channels (probed), the evaluation resize and the training crop."""
    size = data.image_size if data.image_size is not None else native_size(source, train, str(data.source))
    return View(
        size=size,
        channels=image_channels(source, train),
        resize=data.eval_resize or size,
        train_crop=data.train_crop,
        # [low, high], checked by the config
        crop_scale=(float(data.crop_scale[0]), float(data.crop_scale[1])),
        seed=seed,
        num_classes=num_classes,
    )


def _example_sets(
    sources: Sources, chosen: Chosen, view: View, skip: bool
) -> tuple[Examples, Examples, Examples | None, Examples | None]:
    """The workers' datasets of train, test, val and ood (the last two None when the run has none). Only the
    training set replaces an image that fails to decode (``skip``): the scored splits are scored whole."""
    k, relabel = len(sources.classes), chosen.relabel

    def examples(src, rows: np.ndarray | None, relabel: np.ndarray | None) -> Examples | None:
        return None if rows is None or not len(rows) else Examples(src, view, False, rows, relabel, k)

    return (
        Examples(sources.train, view, skip, chosen.train, relabel, k),
        Examples(sources.test, view, False, chosen.test, relabel, k),
        examples(sources.train, chosen.val, relabel),
        examples(sources.test, chosen.ood, np.full(k, -1, dtype=np.int64)),
    )
