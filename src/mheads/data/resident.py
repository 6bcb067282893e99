"""Device-resident training data: a config's data section as tensors on the training device, batched by index.

The whole training set stays uint8 on the training device (a GPU holds CIFAR-10 in 150 MB); each batch is
gathered by index, converted to float, normalized and augmented there, so the hot path has no per-sample
Python. Bagging and label-split specialists are per-member example weights ``(M, N)`` gathered with the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from mheads.config import Config, ConfigError
from mheads.data import BatchPlan, DataError, Normalizer, augment, load_dataset
from mheads.data.batching import shard_rows
from mheads.data.subsets import class_ids, keep_classes, stratified_limit, val_split
from mheads.ensemble.strategies import bootstrap_counts, bootstrap_unique

__all__ = ["ResidentData", "prepare_data"]


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


def _limit(x, y, keep):
    return (x, y) if len(keep) == len(y) else (x[keep], y[keep])


def prepare_data(cfg: Config, device: torch.device, *, dataset=None) -> ResidentData:
    """Load (or take) the data set, check it fits the model, and build the batching state."""
    d, M = cfg.data, cfg.model.members
    ds = dataset if dataset is not None else load_dataset(d.source, cache_dir=d.cache_dir)
    C, H, W = ds.image_shape
    if H != W:
        raise DataError(f"data.source {d.source}: images are {H}x{W}; the models take square images")
    train_x, train_y, test_x, test_y = ds.train.images, ds.train.labels, ds.test.images, ds.test.labels
    classes, ood_x = list(ds.classes), None
    if d.classes is not None:
        ids = class_ids(d.classes, classes)
        kept, train_y = keep_classes(train_y, ids, len(classes))
        train_x = train_x[kept]
        kept, new_test_y = keep_classes(test_y, ids, len(classes))
        ood_rows = np.setdiff1d(np.arange(len(test_y)), kept)
        ood_x, ood_y = test_x[ood_rows], test_y[ood_rows]
        test_x, test_y, classes = test_x[kept], new_test_y, [classes[i] for i in ids]
        ood_x = ood_x[stratified_limit(ood_y, d.test_limit, cfg.train.seed, "ood")]
    seed = cfg.train.seed
    train_x, train_y = _limit(train_x, train_y, stratified_limit(train_y, d.train_limit, seed, "train"))
    test_x, test_y = _limit(test_x, test_y, stratified_limit(test_y, d.test_limit, seed, "test"))
    val_x = val_y = None
    if d.val_fraction:
        keep, held = val_split(len(train_y), d.val_fraction, cfg.train.seed)
        val_x, val_y = train_x[held], train_y[held]
        train_x, train_y = train_x[keep], train_y[keep]
    if d.bootstrap_unique is not None:  # bagging's sample of this N, its duplicates dropped
        keep = bootstrap_unique(len(train_y), d.bootstrap_unique, cfg.train.seed).numpy()
        train_x, train_y = train_x[keep], train_y[keep]
    normalizer = Normalizer.fit(train_x, d.normalize).to(device)
    weights = None
    if d.bagging:
        weights = bootstrap_counts(len(train_y), M, cfg.train.seed).float()
    if d.label_split is not None:
        mask = torch.zeros(M, len(classes))
        for m, labels in enumerate(d.label_split):
            for c in labels:
                if not isinstance(c, int) or not 0 <= c < len(classes):
                    raise ConfigError(
                        f"data.label_split[{m}]: got label {c!r}; expected 0..{len(classes) - 1}"
                    )
                mask[m, c] = 1.0
        spec = mask[:, torch.as_tensor(train_y)]
        weights = spec if weights is None else weights * spec
    memfmt = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    return ResidentData(
        device=device,
        classes=classes,
        train_x=torch.as_tensor(train_x).to(device),
        train_y=torch.as_tensor(train_y, dtype=torch.int64).to(device),
        test_x=torch.as_tensor(test_x).to(device),
        test_y=torch.as_tensor(test_y, dtype=torch.int64).to(device),
        normalizer=normalizer,
        plan=BatchPlan(len(train_y), cfg.train.batch_size, cfg.train.seed),
        weights=weights.to(device) if weights is not None else None,
        crop_padding=d.crop_padding,
        flip=d.flip,
        memory_format=memfmt,
        source=(
            str(d.source)
            if d.source is not None  # a user's Datasets: named as streaming names them
            else "python Datasets"
            if dataset is not None and ds.name == "python"
            else "embedded fashion-mnist subset"
        ),
        val_x=None if val_x is None else torch.as_tensor(val_x).to(device),
        val_y=None if val_y is None else torch.as_tensor(val_y, dtype=torch.int64).to(device),
        ood_x=None if ood_x is None or not len(ood_x) else torch.as_tensor(ood_x).to(device),
    )
