"""Device-resident training data: a config's data section as tensors on the training device, batched by index.

The whole training set stays uint8 on the training device (a GPU holds CIFAR-10 in 150 MB); each batch is
gathered by index, converted to float, normalized and augmented there, so the hot path has no per-sample
Python. Bagging and label-split specialists are per-member example weights ``(M, N)`` gathered with the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import torch

from mheads.config import Config, DataConfig
from mheads.data import BatchPlan, DataError, Dataset, Normalizer, augment, load_dataset
from mheads.data.batching import shard_rows
from mheads.data.member_weights import member_weights
from mheads.data.subsets import class_ids, keep_classes, stratified_limit, val_split
from mheads.ensemble.strategies import bootstrap_unique

__all__ = ["ResidentData", "prepare_data", "resident_data"]


@dataclass
class ResidentData:
    """The whole data set on the training device (uint8 images, int64 labels) with its batching state: which
    examples form batch ``b`` (``plan``), normalization, augmentation and per-member example weights."""

    device: torch.device
    classes: list[str]
    train_x: torch.Tensor  # (N, C, H, W) uint8
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    normalizer: Normalizer
    plan: BatchPlan
    weights: torch.Tensor | None  # (M, N) per-member example weights, or None
    crop_padding: int
    flip: bool
    memory_format: torch.memory_format
    source: str
    val_x: torch.Tensor | None = None  # data.val_fraction: held out of training, for calibration
    val_y: torch.Tensor | None = None
    ood_x: torch.Tensor | None = None  # data.classes: the test images of the other classes (open set)
    shard: tuple[int, int] | None = None  # (replica, replicas): read only this replica's rows of each batch

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[2])

    def train_batch(self, b: int, generator: torch.Generator):
        """Batch ``b`` (this replica's rows of it, with ``shard``): (x (B, C, H, W) float, y (B,), per-member
        weights (M, B) or None)."""
        idx = self.plan.indices(b)
        rows = shard_rows(self.shard, len(idx))
        idx = idx[rows]
        # on CUDA from pinned memory without blocking: a pageable copy would wait for the queued kernels
        idx = (
            idx.pin_memory().to(self.device, non_blocking=True)
            if self.device.type == "cuda"
            else idx.to(self.device)
        )
        x = self.normalizer(self.train_x[idx])
        if self.crop_padding or self.flip:
            x = augment(x, generator, self.crop_padding, self.flip, shard=(rows.start, self.plan.batch_size))
        x = x.contiguous(memory_format=self.memory_format)
        w = self.weights[:, idx] if self.weights is not None else None
        return x, self.train_y[idx], w

    def split_size(self, split: str) -> int:
        """Examples in ``split`` ("train", "test", "val" or "ood"; 0 for a split the run does not have)."""
        xs = {"train": self.train_x, "test": self.test_x, "val": self.val_x, "ood": self.ood_x}[split]
        return 0 if xs is None else len(xs)

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``split`` in order: "test", "train", "val" or "ood" (labels of "ood" are -1)."""
        xs, ys = {
            "test": (self.test_x, self.test_y),
            "train": (self.train_x, self.train_y),
            "val": (self.val_x, self.val_y),
            "ood": (self.ood_x, None),
        }[split]
        if xs is None:
            return
        if ys is None:
            ys = torch.full((len(xs),), -1, dtype=torch.int64, device=xs.device)
        for i in range(0, len(ys), batch_size):
            x = self.normalizer(xs[i : i + batch_size]).contiguous(memory_format=self.memory_format)
            yield x, ys[i : i + batch_size]

    def describe(self) -> dict:
        out = {
            "source": self.source,
            "classes": self.classes,
            "train": int(len(self.train_y)),
            "test": int(len(self.test_y)),
            "image_shape": list(self.train_x.shape[1:]),
        }
        for split in ("val", "ood"):
            if self.split_size(split):
                out[split] = self.split_size(split)
        return out


def prepare_data(cfg: Config, device: torch.device, *, dataset=None) -> ResidentData:
    """Load (or take) the data set, check it fits the model, and build the batching state: the run config's
    adapter to :func:`resident_data`."""
    d = cfg.data
    ds = dataset if dataset is not None else load_dataset(d.source, cache_dir=d.cache_dir)
    source = (
        str(d.source)
        if d.source is not None  # a user's Datasets: named as streaming names them
        else "python Datasets"
        if dataset is not None and ds.name == "python"
        else "embedded fashion-mnist subset"
    )
    t = cfg.train
    return resident_data(
        ds,
        d,
        device,
        members=cfg.model.members,
        seed=t.seed,
        batch_size=t.batch_size,
        channels_last=t.channels_last,
        source=source,
    )


def resident_data(
    ds: Dataset,
    data: DataConfig,
    device: torch.device,
    *,
    members: int,
    seed: int,
    batch_size: int,
    channels_last: bool,
    source: str,
) -> ResidentData:
    """``ds`` on ``device`` as the ``data`` section says (classes, limits, validation split, normalization,
    augmentation, bagging, specialists) for ``members`` members: batches of ``batch_size`` in an order, and
    subsets, seeded by ``seed``; ``source`` names the data in ``describe()``."""
    C, H, W = ds.image_shape
    if H != W:
        raise DataError(f"data.source {data.source}: images are {H}x{W}; the models take square images")
    kept = _kept(ds, data, seed)
    normalizer = Normalizer.fit(kept.train_x, data.image_normalize).to(device)
    weights = member_weights(
        len(kept.train_y),
        len(kept.classes),
        members,
        seed,
        data.bagging,
        data.label_split,
        labels=lambda: kept.train_y,
    )
    return ResidentData(
        device=device,
        classes=kept.classes,
        train_x=torch.as_tensor(kept.train_x).to(device),
        train_y=torch.as_tensor(kept.train_y, dtype=torch.int64).to(device),
        test_x=torch.as_tensor(kept.test_x).to(device),
        test_y=torch.as_tensor(kept.test_y, dtype=torch.int64).to(device),
        normalizer=normalizer,
        plan=BatchPlan(len(kept.train_y), batch_size, seed),
        weights=weights.to(device) if weights is not None else None,
        crop_padding=data.crop_padding,
        flip=data.flip,
        memory_format=torch.channels_last if channels_last else torch.contiguous_format,
        source=source,
        val_x=_on(kept.val_x, device),
        val_y=None if kept.val_y is None else torch.as_tensor(kept.val_y, dtype=torch.int64).to(device),
        ood_x=None if kept.ood_x is None or not len(kept.ood_x) else _on(kept.ood_x, device),
    )


@dataclass(frozen=True, eq=False)
class _Kept:
    """The examples a run keeps, as numpy arrays: images ``(N, C, H, W)`` uint8, labels ``(N,)`` int64 in
    the run's class numbering; ``val_*``: held out of train, ``ood_x``: the test images of the classes
    ``data.classes`` leaves out."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None
    ood_x: np.ndarray | None = None


def _kept(ds: Dataset, data: DataConfig, seed: int) -> _Kept:
    """The examples of ``ds`` that ``data`` keeps, step by step: ``data.classes`` (the open set), the limits,
    the validation split, then bagging's ``bootstrap_unique``."""
    kept = _Kept(ds.train.images, ds.train.labels, ds.test.images, ds.test.labels, list(ds.classes))
    if data.classes is not None:
        kept = _only_classes(kept, data.classes, data.test_limit, seed)
    kept = _limited(kept, data.train_limit, data.test_limit, seed)
    if data.val_fraction:
        kept = _held_out(kept, data.val_fraction, seed)
    if data.bootstrap_unique is not None:  # bagging's sample of this N, its duplicates dropped
        keep = bootstrap_unique(len(kept.train_y), data.bootstrap_unique, seed).numpy()
        kept = replace(kept, train_x=kept.train_x[keep], train_y=kept.train_y[keep])
    return kept


def _only_classes(kept: _Kept, requested: list, test_limit: int | None, seed: int) -> _Kept:
    """``data.classes``: the examples of the ``requested`` classes, renumbered 0.. in their order; the test
    images of the others become the open set (``ood_x``, a stratified ``test_limit`` of them)."""
    ids = class_ids(requested, kept.classes)
    k = len(kept.classes)
    train_rows, train_y = keep_classes(kept.train_y, ids, k)
    test_rows, test_y = keep_classes(kept.test_y, ids, k)
    ood_rows = np.setdiff1d(np.arange(len(kept.test_y)), test_rows)
    ood_x, ood_y = kept.test_x[ood_rows], kept.test_y[ood_rows]
    return replace(
        kept,
        train_x=kept.train_x[train_rows],
        train_y=train_y,
        test_x=kept.test_x[test_rows],
        test_y=test_y,
        classes=[kept.classes[i] for i in ids],
        ood_x=ood_x[stratified_limit(ood_y, test_limit, seed, "ood")],
    )


def _limited(kept: _Kept, train_limit: int | None, test_limit: int | None, seed: int) -> _Kept:
    """``data.train_limit`` / ``test_limit``: a seeded class-stratified subset of each split."""
    train_x, train_y = _limit(
        kept.train_x, kept.train_y, stratified_limit(kept.train_y, train_limit, seed, "train")
    )
    test_x, test_y = _limit(kept.test_x, kept.test_y, stratified_limit(kept.test_y, test_limit, seed, "test"))
    return replace(kept, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)


def _limit(x, y, keep):
    return (x, y) if len(keep) == len(y) else (x[keep], y[keep])


def _held_out(kept: _Kept, fraction: float, seed: int) -> _Kept:
    """``data.val_fraction``: a seeded share of the training examples moved to the validation split."""
    keep, held = val_split(len(kept.train_y), fraction, seed)
    return replace(
        kept,
        train_x=kept.train_x[keep],
        train_y=kept.train_y[keep],
        val_x=kept.train_x[held],
        val_y=kept.train_y[held],
    )


def _on(x: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    return None if x is None else torch.as_tensor(x).to(device)
