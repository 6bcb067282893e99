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
naming it; a file that still fails to decode during training stops it too, or with ``data.on_bad_image:
skip`` is replaced by the next readable example in index order (deterministic, so resume stays exact) and
counted (``skipped_images`` in the metrics).

Workers: they ignore SIGTERM and SIGINT (the training process decides: a checkpoint, then exit 75; see
:mod:`mheads.data.stream_worker`). A worker that dies (the out-of-memory killer) or sends no batch for
``WORKER_TIMEOUT_S`` (stopped, hung) ends the run with one line (:class:`StreamWorkerError`, exit 2) instead
of a DataLoader traceback or a wait without end; the run resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mheads.config import Config, ConfigError
from mheads.core.resources import available_memory, gib
from mheads.core.seeding import Stream, derive_seed
from mheads.data.batching import BatchPlan, shard_rows
from mheads.data.errors import DataError
from mheads.data.examples import FileExamples, TorchExamples
from mheads.data.from_torch import class_names
from mheads.data.headers import check_headers
from mheads.data.index import StreamIndex
from mheads.data.preprocess import Normalizer, NormalizerStats, augment
from mheads.data.stream_worker import (
    Examples,
    TrainKeys,
    View,
    collate,
    default_workers,
    worker_init,
    workers_shielded,
)
from mheads.data.subsets import class_ids, keep_classes, stratified_limit, val_split
from mheads.ensemble.strategies import bootstrap_counts, bootstrap_unique

__all__ = [
    "WORKER_TIMEOUT_S",
    "StreamData",
    "StreamWorkerError",
    "default_workers",
    "prepare_stream",
    "worker_errors",
]

log = logging.getLogger(__name__)

_PROBE = 16  # training images decoded to decide greyscale (1 channel) or colour (3)
PREFETCH = 4  # batches each worker decodes ahead
WORKER_TIMEOUT_S = 600.0  # no batch from the workers for this long: one is stopped or hung
_STATS_BATCH = 500  # images per batch of the normalization pass, at most
_STATS_BATCH_BYTES = 64 * 2**20  # ... and at most this many decoded bytes
_LONG_SCAN = 10_000  # reading more labels than this before training is announced


class StreamWorkerError(DataError):
    """A DataLoader worker died (the out-of-memory killer, a signal sent to it alone) or sent nothing for
    ``WORKER_TIMEOUT_S`` (stopped or hung). Bad input in the sense of the exit codes (2): the machine could
    not run the workers the config asks for; the run folder stays resumable."""


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


def _fetch(it):
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

    def _next_batch(self, it: Iterator):
        t0 = time.perf_counter()
        batch = _fetch(it)
        self.wait_s += time.perf_counter() - t0
        if isinstance(batch, str):
            raise DataError(f"{batch}; set data.on_bad_image: skip to train past unreadable images")
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
            x, y, _ = self._next_batch(it)
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


def _probe(source, indices: np.ndarray):
    """The first readable images among the training examples ``indices[:_PROBE]`` (those the run uses)."""
    for i in indices[:_PROBE]:
        try:
            yield int(i), source.load(int(i), None)[0]
        except DataError:
            continue


def _channels(source, indices: np.ndarray) -> int:
    """3 when any probed training image is in colour, else 1 (colour images met later are made grey)."""
    return 3 if any(img.mode != "L" for _, img in _probe(source, indices)) else 1


def _native_size(source, indices: np.ndarray, where: str) -> int:
    """The side of the first readable training image, which must be square (``data.image_size`` unset)."""
    for i, img in _probe(source, indices):
        w, h = img.size
        if w != h:
            raise DataError(
                f"{source.where(i)}: image is {w}x{h}; set data.image_size to stream images that "
                "are not square (they are resized and centre-cropped to it)"
            )
        return w
    raise DataError(
        f"data.source {where}: none of the first {min(len(indices), _PROBE)} training images is readable"
    )


def _stats_plan(data: StreamData, ds: Examples, mode: str, count: int) -> int:
    """Images per batch of the normalization pass; refuses (``ConfigError`` naming ``data.image_size``) a pass
    whose statistics and batches in flight would not fit the memory there is, before any is allocated."""
    view = ds.view
    image = view.channels * view.size * view.size  # bytes of one decoded uint8 image
    per_batch = max(1, min(_STATS_BATCH, count, _STATS_BATCH_BYTES // image))
    # the batches the workers decode ahead, the one being added and its stacked copy in collate
    batches = per_batch * image * (data.queued_batches + 2)
    # mean_image: an int64 sum per pixel, its float64 mean and the float32 mean image (8 + 8 + 4 bytes)
    state = 20 * image if mode == "mean_image" else 0
    need, avail = batches + state, available_memory("cpu")
    if need > 0.9 * avail:
        size = (
            f"got {view.size}"
            if data.image_size_set
            else f"unset, and the images are {view.size}x{view.size}"
        )
        raise ConfigError(
            f"data.image_size: {size}; the normalization statistics ({mode}) would need about "
            f"{gib(need)} ({data.queued_batches + 2} batches of {per_batch} images in flight"
            f"{', the mean image' if state else ''}) but {gib(avail)} of memory is available; "
            "set a smaller data.image_size (or fewer data.workers)"
        )
    return per_batch


def _fit_normalizer(
    data: StreamData, ds: Examples, mode: str, limit: int, seed: int, progress: bool = False
) -> Normalizer:
    n = ds.n
    if n <= limit:
        order = np.arange(n)
    else:
        order = np.sort(
            np.random.default_rng(derive_seed(seed, Stream.NORMALIZER)).choice(n, limit, replace=False)
        )
    per_batch = _stats_plan(data, ds, mode, len(order))
    stats = NormalizerStats(ds.view.channels, ds.view.size, ds.view.size, modes=(mode,))
    keys = [[(int(i), -1, 0) for i in order[s : s + per_batch]] for s in range(0, len(order), per_batch)]
    it = data._start(ds, keys)
    for _ in tqdm(
        keys,
        desc="normalization statistics",
        unit="batch",
        disable=not progress,
        leave=False,
    ):
        batch = _fetch(it)
        if isinstance(batch, str):
            raise DataError(f"{batch}; set data.on_bad_image: skip to train past unreadable images")
        stats.update(batch[0])
    return stats.finish(mode)


def prepare_stream(
    cfg: Config,
    device: torch.device,
    index: StreamIndex | None = None,
    *,
    train=None,
    test=None,
    progress: bool = False,
) -> StreamData:
    """The streamed data ``cfg.data`` describes: from an index of files (``index``), or from a user's torch
    Datasets (``train``, ``test``; ``test=None`` evaluates on ``train``)."""
    d, t, M = cfg.data, cfg.train, cfg.model.members
    train_src: FileExamples | TorchExamples
    test_src: FileExamples | TorchExamples
    if index is not None:
        for split, idx in (("train", index.train), ("test", index.test)):
            bad = check_headers(idx, split, progress)
            if bad:
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                if d.on_bad_image == "stop":
                    raise DataError(
                        f"{bad[0][1]}{more}; remove or replace it, or set data.on_bad_image: skip"
                    )
                log.warning("%s%s: skipped where drawn (data.on_bad_image: skip)", bad[0][1], more)
        train_src, test_src = FileExamples(index.train), FileExamples(index.test)
        classes, where = list(index.classes), f"{d.source} ({index.kind})"
    else:
        train_src = TorchExamples(train, "train")
        test_src = TorchExamples(test, "test") if test is not None else train_src
        # its own class names when it has them (torchvision's do; a label outside them stops the run where
        # it is read); otherwise one pass over its labels, announced when long
        if getattr(train, "classes", None) is not None:
            classes = [str(c) for c in train.classes]
        else:
            if getattr(train, "targets", None) is None and len(train_src) > _LONG_SCAN:
                log.info(
                    "reading the labels of all %d train examples to count the classes (give the "
                    "Dataset `classes` and `targets` attributes to skip this pass)",
                    len(train_src),
                )
            classes = class_names(train, train_src.labels(progress))
        where = "python Datasets"
    all_classes, relabel = classes, None
    train_idx, test_idx, val_idx, ood_idx = np.arange(len(train_src)), np.arange(len(test_src)), None, None
    if d.classes is not None:
        ids = class_ids(d.classes, classes)
        train_idx, _ = keep_classes(train_src.labels(), ids, len(classes))
        test_idx, _ = keep_classes(test_src.labels(), ids, len(classes))
        ood_idx = np.setdiff1d(np.arange(len(test_src)), test_idx)
        ood_idx = ood_idx[stratified_limit(test_src.labels()[ood_idx], d.test_limit, t.seed, "ood")]
        relabel = np.full(len(classes), -1, dtype=np.int64)
        relabel[ids] = np.arange(len(ids))
        classes = [classes[i] for i in ids]
    if d.train_limit is not None:
        train_idx = train_idx[stratified_limit(train_src.labels()[train_idx], d.train_limit, t.seed, "train")]
    if d.test_limit is not None:
        test_idx = test_idx[stratified_limit(test_src.labels()[test_idx], d.test_limit, t.seed, "test")]
    if d.val_fraction:
        keep, held = val_split(len(train_idx), d.val_fraction, t.seed)
        train_idx, val_idx = train_idx[keep], train_idx[held]
    if d.bootstrap_unique is not None:  # bagging's sample of this N, its duplicates dropped
        train_idx = train_idx[bootstrap_unique(len(train_idx), d.bootstrap_unique, t.seed).numpy()]
    n_train, n_test = len(train_idx), len(test_idx)
    size = d.image_size if d.image_size is not None else _native_size(train_src, train_idx, str(d.source))
    view = View(
        size=size,
        channels=_channels(train_src, train_idx),
        resize=d.eval_resize or size,
        train_crop=d.train_crop,
        crop_scale=(float(d.crop_scale[0]), float(d.crop_scale[1])),  # [low, high], checked by the config
        seed=t.seed,
        num_classes=len(classes),
    )
    skip, k = d.on_bad_image == "skip", len(all_classes)
    train_set, test_set = (
        Examples(train_src, view, skip, train_idx, relabel, k),
        Examples(test_src, view, skip, test_idx, relabel, k),
    )
    val_set = (
        None if val_idx is None or not len(val_idx) else Examples(train_src, view, skip, val_idx, relabel, k)
    )
    ood_set = (
        None
        if ood_idx is None or not len(ood_idx)
        else Examples(test_src, view, skip, ood_idx, np.full(k, -1, dtype=np.int64), k)
    )
    workers = default_workers(d.workers)
    memfmt = torch.channels_last if t.channels_last else torch.contiguous_format
    data = StreamData(
        device=device,
        classes=classes,
        train_set=train_set,
        test_set=test_set,
        val_set=val_set,
        ood_set=ood_set,
        normalizer=Normalizer("none", torch.tensor(0.0), torch.tensor(1.0)),
        plan=BatchPlan(n_train, t.batch_size, t.seed),
        weights=None,
        crop_padding=d.crop_padding,
        flip=d.flip,
        memory_format=memfmt,
        source=where,
        workers=workers,
        total_batches=t.iterations * t.accumulate,
        image_size_set=d.image_size is not None,
        timeout_s=WORKER_TIMEOUT_S,
    )
    data.normalizer = _fit_normalizer(data, train_set, d.normalize, d.stats_images, t.seed, progress)
    data.normalizer = data.normalizer.to(device)
    weights = None
    if d.bagging:
        weights = bootstrap_counts(n_train, M, t.seed).float()
    if d.label_split is not None:
        mask = torch.zeros(M, len(classes))
        for m, labels in enumerate(d.label_split):
            for c in labels:
                if not isinstance(c, int) or not 0 <= c < len(classes):
                    raise ConfigError(
                        f"data.label_split[{m}]: got label {c!r}; expected 0..{len(classes) - 1}"
                    )
                mask[m, c] = 1.0
        labels = train_src.labels()[train_idx]
        spec = mask[:, torch.as_tensor(labels if relabel is None else relabel[labels])]
        weights = spec if weights is None else weights * spec
    data.weights = weights.to(device) if weights is not None else None
    log.info(
        "streaming %s: %d train / %d test images at %dx%d, %d workers",
        where,
        n_train,
        n_test,
        size,
        size,
        workers,
    )
    return data
