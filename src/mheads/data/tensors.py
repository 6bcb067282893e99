"""Resident data of any shape and kind (issue 32): a user's ``(input, target)`` Datasets decoded whole onto
the training device, for every task and for inputs that are not square images.

Inputs: tensors or arrays of one shape per split, ``(F,)`` features, ``(C, T)`` sequences, ``(C, H, W)``
images of any height and width (uint8 ones are scaled to [0, 1] floats per batch, as a bare TreeNet sees
them; nothing else is normalized), integer token ids, PIL images, or dicts of such tensors (token ids and an
attention mask: the model is called with the dict of batched tensors). Targets: class indices, float vectors
or scalars, masks: any tensor shape, one per split (a float target stays float32, an integer one int64).

Batches come from the same :class:`~mheads.data.batching.BatchPlan` as the image loaders (a pure function of
the seed and the batch number: exact resume), bagging is per-member example weights ``(M, N)``, and
``data.train_limit`` / ``test_limit`` / ``val_fraction`` / ``bootstrap_unique`` select examples as they do
for images (class-stratified where the targets are class indices, else a seeded subset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from mheads.config import Config, ConfigError
from mheads.core.seeding import derived_generator
from mheads.data.batching import BatchPlan, shard_rows
from mheads.data.errors import DataError
from mheads.data.subsets import stratified_limit, val_split
from mheads.ensemble.strategies import bootstrap_counts, bootstrap_unique

__all__ = [
    "MAX_INPUT_ELEMENTS",
    "TensorData",
    "as_tensor",
    "input_spec",
    "is_image_input",
    "prepare_tensors",
    "read_pairs",
    "spec_example",
    "take",
]

Inputs = Any  # torch.Tensor (N, ...) or dict[str, torch.Tensor]
MAX_INPUT_ELEMENTS = 2**28  # one example's numbers, as recorded in a run's meta (bounded before allocating)


def is_image_input(x: Any) -> bool:
    """Whether a Dataset's first input is an image the classification loaders take as they always have (and
    check as they always have: floats outside [0, 1] are refused there): a PIL image, or a square
    ``(C, H, W)`` (C of 1, 3 or 4) or ``(H, W)`` tensor or array of uint8 or floats. Anything else (features,
    sequences, non-square images, dicts, integer token ids) is read as tensors."""
    if hasattr(x, "getbands"):
        return True
    if isinstance(x, dict) or not isinstance(x, (torch.Tensor, np.ndarray)):
        return False
    t = torch.as_tensor(x)
    if t.ndim not in (2, 3) or t.shape[-1] != t.shape[-2] or (t.ndim == 3 and t.shape[0] not in (1, 3, 4)):
        return False
    return t.dtype == torch.uint8 or t.is_floating_point()


def as_tensor(value: Any, where: str) -> torch.Tensor:
    """One input or target as a tensor (a PIL image as uint8 ``(C, H, W)``, a number 0-d)."""
    if hasattr(value, "getbands"):
        from mheads.data.from_torch import _image

        return torch.from_numpy(_image(value, where))
    if isinstance(value, bool):
        raise DataError(f"{where}: got a bool; expected a number or a tensor")
    try:
        t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(
            f"{where}: got {type(value).__name__}; expected a tensor, an array or a number"
        ) from None
    if t.dtype == torch.bool:
        t = t.to(torch.int64)
    if t.is_complex() or not (
        t.is_floating_point() or t.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
    ):
        raise DataError(f"{where}: dtype {t.dtype}; expected floating or integer values")
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()):
            raise DataError(f"{where}: a non-finite value; expected finite numbers")
        return t.to(torch.float32)
    return t if t.dtype == torch.uint8 else t.to(torch.int64)


def _stack(items: list[torch.Tensor], where: str) -> torch.Tensor:
    first = items[0]
    for i, t in enumerate(items):
        if t.shape != first.shape or t.dtype != first.dtype:
            raise DataError(
                f"{where}[{i}]: {t.dtype} of shape {tuple(t.shape)} differs from {where}[0]'s "
                f"{first.dtype} {tuple(first.shape)}; every example of a split must have one "
                "shape and dtype (crop or pad them, or batch them yourself)"
            )
    return torch.stack(items)


def read_pairs(ds, name: str) -> tuple[Inputs, torch.Tensor]:
    """Every ``(input, target)`` of a map-style Dataset, stacked: inputs ``(N, ...)`` (or a dict of them),
    targets ``(N, ...)``."""
    from mheads.data.from_torch import check_user_dataset

    n, _ = check_user_dataset(ds, name)
    xs: list[Any] = []
    ys: list[torch.Tensor] = []
    for i in range(n):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"{name}[{i}]: got {type(item).__name__}; expected an (input, target) pair")
        x, y = item[0], item[1]
        if isinstance(x, dict):
            if not x or not all(isinstance(k, str) for k in x):
                raise DataError(
                    f"{name}[{i}]: a dict input with keys {list(x)[:6]}; expected string keys naming tensors"
                )
            xs.append({k: as_tensor(v, f"{name}[{i}][{k!r}]") for k, v in x.items()})
        else:
            xs.append(as_tensor(x, f"{name}[{i}] input"))
        ys.append(as_tensor(y, f"{name}[{i}] target"))
    if isinstance(xs[0], dict):
        keys = list(xs[0])
        for i, x in enumerate(xs):
            if not isinstance(x, dict) or list(x) != keys:
                raise DataError(
                    f"{name}[{i}]: input keys {list(x) if isinstance(x, dict) else type(x)}; "
                    f"expected {keys}, as {name}[0]'s"
                )
        inputs: Inputs = {k: _stack([x[k] for x in xs], f"{name} input {k!r}") for k in keys}
    else:
        inputs = _stack(xs, f"{name} input")
    return inputs, _stack(ys, f"{name} target")


def take(x: Inputs, index: Any) -> Inputs:
    """Rows ``index`` of a tensor or of every tensor of a dict."""
    return {k: v[index] for k, v in x.items()} if isinstance(x, dict) else x[index]


def _to(x: Inputs, device: torch.device) -> Inputs:
    return {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)


def _model_view(x: Inputs) -> Inputs:
    """What the model sees: uint8 images as [0, 1] floats, everything else as stored."""
    if isinstance(x, dict):
        return {k: _model_view(v) for k, v in x.items()}
    return x.float() / 255 if x.dtype == torch.uint8 else x


def _rows(x: Inputs) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def input_spec(x: Inputs) -> dict:
    """One example's shape and dtype (a dict input: per key), as a run's meta records it."""
    if isinstance(x, dict):
        return {"dict": {k: input_spec(v) for k, v in x.items()}}
    return {"shape": list(x.shape[1:]), "dtype": str(x.dtype).removeprefix("torch.")}


def spec_example(spec: Any, where: str) -> Inputs:
    """A batch of 2 zeros (ones for masks) of ``spec`` (:func:`input_spec`'s), to build a model on; the sizes
    are bounded first (a run's meta is data someone may hand over)."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: input: got {str(spec)[:60]}; expected a recorded input description")
    if "dict" in spec and isinstance(spec["dict"], dict) and spec["dict"]:
        return {str(k): spec_example(v, where) for k, v in spec["dict"].items()}
    shape, dtype = spec.get("shape"), spec.get("dtype")
    if (
        not isinstance(shape, list)
        or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s for s in shape)
        or math.prod(shape) > MAX_INPUT_ELEMENTS
        or dtype not in ("float32", "int64", "uint8")
    ):
        raise ValueError(
            f"{where}: input: got {str(spec)[:80]}; expected a shape of positive sizes of at "
            f"most {MAX_INPUT_ELEMENTS} numbers and a dtype float32, int64 or uint8"
        )
    t = torch.zeros(2, *shape, dtype=getattr(torch, dtype))
    return _model_view(t)


@dataclass
class TensorData:
    """The decoded splits on the training device and the batching state (see the module docstring); the
    same interface as :class:`~mheads.data.resident.ResidentData` (``train_batch``, ``eval_batches``,
    ``split_size``, ``describe``)."""

    device: torch.device
    train_x: Inputs
    train_y: torch.Tensor
    test_x: Inputs
    test_y: torch.Tensor
    plan: BatchPlan
    weights: torch.Tensor | None
    source: str
    classes: list[str] | None = None
    val_x: Inputs | None = None
    val_y: torch.Tensor | None = None
    shard: tuple[int, int] | None = None
    normalizer: Any = None  # no normalization: the inputs are given as the model takes them
    in_channels: int = 1  # not images: the run's meta records "input" (input_spec) instead
    image_size: int = 1
    ood_x: Any = field(default=None)

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else 0

    def train_batch(self, b: int, generator: torch.Generator | None = None):
        """Batch ``b`` (this replica's rows with ``shard``): (inputs, targets, per-member weights (M, B) or
        None)."""
        idx = self.plan.indices(b)
        idx = idx[shard_rows(self.shard, len(idx))].to(self.device)
        w = self.weights[:, idx] if self.weights is not None else None
        return _model_view(take(self.train_x, idx)), self.train_y[idx], w

    def split_size(self, split: str) -> int:
        xs = {"train": self.train_x, "test": self.test_x, "val": self.val_x, "ood": None}[split]
        return 0 if xs is None else _rows(xs)

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[Inputs, torch.Tensor]]:
        xs, ys = {
            "test": (self.test_x, self.test_y),
            "train": (self.train_x, self.train_y),
            "val": (self.val_x, self.val_y),
            "ood": (None, None),
        }[split]
        if xs is None or ys is None:
            return
        for i in range(0, len(ys), batch_size):
            yield _model_view(take(xs, slice(i, i + batch_size))), ys[i : i + batch_size]

    def example_input(self) -> Inputs:
        """The first training example, a batch of 1 on the CPU, as the model sees it."""
        return _to(_model_view(take(self.train_x, slice(0, 1))), torch.device("cpu"))

    def input_spec(self) -> dict:
        return input_spec(self.train_x)

    def target_shape(self) -> tuple[int, ...]:
        return tuple(self.train_y.shape[1:])

    def describe(self) -> dict:
        out = {
            "source": self.source,
            "classes": self.classes,
            "train": int(len(self.train_y)),
            "test": int(len(self.test_y)),
            "input": self.input_spec(),
            "target": {
                "shape": list(self.train_y.shape[1:]),
                "dtype": str(self.train_y.dtype).removeprefix("torch."),
            },
        }
        if self.split_size("val"):
            out["val"] = self.split_size("val")
        return out


def _class_targets(y: torch.Tensor) -> bool:
    return y.ndim == 1 and not y.is_floating_point()


def _limit(
    x: Inputs, y: torch.Tensor, limit: int | None, seed: int, split: str
) -> tuple[Inputs, torch.Tensor]:
    n = len(y)
    if limit is None or limit >= n:
        return x, y
    if _class_targets(y):
        keep = torch.from_numpy(stratified_limit(y.numpy(), limit, seed, split))
    else:
        perm = torch.randperm(n, generator=derived_generator(seed, "tensor-limit", split))
        keep = perm[:limit].sort().values
    return take(x, keep), y[keep]


def prepare_tensors(
    cfg: Config,
    device: torch.device,
    train,
    test=None,
    *,
    source: str = "python Datasets",
    classes: list[str] | None = None,
) -> TensorData:
    """Read a user's ``train`` (and ``test``; None: evaluate on ``train``) Datasets whole and build the
    batching state ``cfg`` asks for. ``train`` / ``test`` may also be ``(inputs, targets)`` tensors already
    stacked."""
    d, seed, M = cfg.data, cfg.train.seed, cfg.model.members
    for name, bad in (
        ("data.label_split", d.label_split is not None),
        ("data.classes", d.classes is not None),
        ("data.crop_padding", d.crop_padding != 0),
        ("data.flip", d.flip),
    ):
        if bad:
            raise ConfigError(
                f"{name}: got {getattr(d, name.split('.')[1])!r}; expected its default for "
                "inputs that are not square images (augmentation and class selection are "
                "image-classification settings)"
            )
    train_x, train_y = train if isinstance(train, tuple) else read_pairs(train, "train")
    test_x, test_y = (
        (train_x, train_y)
        if test is None
        else (test if isinstance(test, tuple) else read_pairs(test, "test"))
    )
    train_x, train_y = _limit(train_x, train_y, d.train_limit, seed, "train")
    test_x, test_y = _limit(test_x, test_y, d.test_limit, seed, "test")
    val_x = val_y = None
    if d.val_fraction:
        keep, held = (torch.from_numpy(a) for a in val_split(len(train_y), d.val_fraction, seed))
        val_x, val_y = take(train_x, held), train_y[held]
        train_x, train_y = take(train_x, keep), train_y[keep]
    if d.bootstrap_unique is not None:
        keep = bootstrap_unique(len(train_y), d.bootstrap_unique, seed)
        train_x, train_y = take(train_x, keep), train_y[keep]
    if cfg.task.is_classification and classes is None:
        if not _class_targets(train_y) or not _class_targets(test_y):
            raise DataError(
                f"train: targets {train_y.dtype} of shape {tuple(train_y.shape)}; classification "
                "expects integer class indices (N,): set task.name (regression, "
                "multi_hypothesis, segmentation) for other targets"
            )
        top = int(max(int(train_y.max()), int(test_y.max()))) + 1
        if int(min(int(train_y.min()), int(test_y.min()))) < 0:
            raise DataError("train: a negative class index; expected class indices >= 0")
        classes = [str(i) for i in range(top)]
    weights = bootstrap_counts(len(train_y), M, seed).float().to(device) if d.bagging else None
    return TensorData(
        device=device,
        train_x=_to(train_x, device),
        train_y=train_y.to(device),
        test_x=_to(test_x, device),
        test_y=test_y.to(device),
        plan=BatchPlan(len(train_y), cfg.train.batch_size, seed),
        weights=weights,
        source=source,
        classes=classes,
        val_x=None if val_x is None else _to(val_x, device),
        val_y=None if val_y is None else val_y.to(device),
    )
