"""Resident data of any shape and kind (issue 32): a user's ``(input, target)`` Datasets decoded whole onto
the training device, for every task and for inputs that are not square images.

Inputs: tensors or arrays of one shape per split, ``(F,)`` features, ``(C, T)`` sequences, ``(C, H, W)``
images of any height and width, integer token ids, PIL images, or dicts of such tensors (token ids and an
attention mask: the model is called with the dict of batched tensors). One rule for uint8, on every path
(a Dataset, an ``.npz`` file, predict and eval inputs; an input alone or a dict entry, any shape): uint8 is
pixels, kept uint8 and given to the model as [0, 1] float32 per batch (:func:`pixels_scaled`; the run
records ``uint8``); nothing else is normalized. Integer ids (token ids, masks, codes) are given as int32 or
int64 and reach the model as int64. Targets: class indices, float vectors or scalars, masks: any tensor
shape, one per split (a float target stays float32, an integer one int64).

Batches come from the same :class:`~mheads.data.batching.BatchPlan` as the image loaders (a pure function of
the seed and the batch number: exact resume), bagging is per-member example weights ``(M, N)``, and
``data.train_limit`` / ``test_limit`` / ``val_fraction`` / ``bootstrap_unique`` select examples as they do
for images (class-stratified where the targets are class indices, else a seeded subset; the steps are
:mod:`mheads.data.rows`'s, shared with the streamed Datasets of :mod:`mheads.data.dataset_stream`).
:class:`AnyShapeData` is what both give the training loop.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from mheads.config import Config, ConfigError
from mheads.data.batching import BatchPlan, shard_rows
from mheads.data.errors import DataError
from mheads.data.rows import RowChoice, bagging_weights, choose_rows, class_targets, count_classes

__all__ = [
    "MAX_INPUT_ELEMENTS",
    "AnyShapeData",
    "TensorData",
    "as_tensor",
    "check_like",
    "check_splits_alike",
    "check_same",
    "input_spec",
    "is_image_input",
    "item_tensors",
    "model_view",
    "pixels_scaled",
    "prepare_tensors",
    "read_pairs",
    "refuse_image_settings",
    "refuse_normalize",
    "spec_example",
    "stack_items",
    "take",
    "to_device",
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


def pixels_scaled(t: torch.Tensor) -> torch.Tensor:
    """The one uint8 rule, for every input path: uint8 is pixels, given to the model as float32 in [0, 1]
    (any shape, an input alone or a dict entry); anything else as stored. Integer ids are int32/int64."""
    return t.float() / 255 if t.dtype == torch.uint8 else t


def item_tensors(item: Any, where: str) -> tuple[Inputs, torch.Tensor]:
    """One Dataset item ``(input, target)`` as tensors (:func:`as_tensor`; a dict input: per string key);
    ``where`` names the item (``train[5]``) in a one-line ``DataError``."""
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise DataError(f"{where}: got {type(item).__name__}; expected an (input, target) pair")
    x, y = item[0], item[1]
    if isinstance(x, dict):
        if not x or not all(isinstance(k, str) for k in x):
            raise DataError(
                f"{where}: a dict input with keys {list(x)[:6]}; expected string keys naming tensors"
            )
        return {k: as_tensor(v, f"{where}[{k!r}]") for k, v in x.items()}, as_tensor(y, f"{where} target")
    return as_tensor(x, f"{where} input"), as_tensor(y, f"{where} target")


def check_same(t: torch.Tensor, first: torch.Tensor, where: str, i: int) -> None:
    """Tensor ``i`` of ``where`` against the first one: the same shape and dtype (else a one-line error)."""
    if t.shape != first.shape or t.dtype != first.dtype:
        raise DataError(
            f"{where}[{i}]: {t.dtype} of shape {tuple(t.shape)} differs from {where}[0]'s "
            f"{first.dtype} {tuple(first.shape)}; every example of a split must have one "
            "shape and dtype (crop or pad them, or batch them yourself)"
        )


def check_like(x: Inputs, y: torch.Tensor, first: tuple[Inputs, torch.Tensor], name: str, i: int) -> None:
    """Example ``i`` of split ``name`` (``x``, ``y`` from :func:`item_tensors`) against its first example
    ``first``: the same dict keys, and per tensor the same shape and dtype (a one-line ``DataError`` naming
    ``name[i]`` otherwise)."""
    x0, y0 = first
    if isinstance(x0, dict):
        if not isinstance(x, dict) or list(x) != list(x0):
            raise DataError(
                f"{name}[{i}]: input keys {list(x) if isinstance(x, dict) else type(x)}; "
                f"expected {list(x0)}, as {name}[0]'s"
            )
        for k in x0:
            check_same(x[k], x0[k], f"{name} input {k!r}", i)
    elif isinstance(x, dict):
        raise DataError(f"{name}[{i}]: a dict input; expected a tensor, as {name}[0]'s")
    else:
        check_same(x, x0, f"{name} input", i)
    check_same(y, y0, f"{name} target", i)


def check_splits_alike(train: tuple[Inputs, torch.Tensor], test: tuple[Inputs, torch.Tensor]) -> None:
    """The test split's first example against the training split's (``(input, target)`` as
    :func:`item_tensors` gives them): the same dict keys, kinds and shapes (:func:`_kinds`), so that a test
    set the model cannot be scored on is one line before training, not an error at the first evaluation."""
    got, want = ({"input": _kinds(x), "target": _kinds(y, target=True)} for x, y in (test, train))
    for part in ("input", "target"):
        if got[part] != want[part]:
            raise DataError(
                f"test[0]: {part} {got[part]}; expected train[0]'s {want[part]} (the model trains on one "
                "and is scored on the other)"
            )


def _kinds(x: Inputs, target: bool = False, free: bool = False) -> Any:
    """What the splits' examples must agree on: the kind (float, integer, or an input's uint8 pixels, which
    the model sees as [0, 1] floats: :func:`pixels_scaled`) and the shape, but for the sizes a convolution or
    a sequence model takes at any value (``*``): every axis of a dict's entries (token ids of any length), of
    integer token ids ``(T,)``, of a target of 2 or more axes (a mask), and of an input of 2 or more but the
    first (channels of images and sequences)."""
    if isinstance(x, dict):
        return {k: _kinds(v, free=True) for k, v in x.items()}
    shape = [str(n) for n in x.shape]
    pixels = not target and x.dtype == torch.uint8
    tokens = not target and x.ndim == 1 and not x.is_floating_point() and not pixels
    if free or tokens or (target and x.ndim >= 2):
        shape = ["*"] * x.ndim
    elif x.ndim >= 2:
        shape = [shape[0]] + ["*"] * (x.ndim - 1)
    kind = "float" if x.is_floating_point() else "uint8 pixels" if pixels else "integer"
    return f"{kind} ({', '.join(shape)}{',' * (len(shape) == 1)})"


def stack_items(items: list[tuple[Inputs, torch.Tensor]]) -> tuple[Inputs, torch.Tensor]:
    """Checked examples (:func:`check_like`) stacked: inputs ``(n, ...)`` (or a dict of them), targets
    ``(n, ...)``."""
    x0 = items[0][0]
    ys = torch.stack([y for _, y in items])
    if isinstance(x0, dict):
        return {k: torch.stack([x[k] for x, _ in items]) for k in x0}, ys
    return torch.stack([x for x, _ in items]), ys


def read_pairs(ds, name: str) -> tuple[Inputs, torch.Tensor]:
    """Every ``(input, target)`` of a map-style Dataset, stacked: inputs ``(N, ...)`` (or a dict of them),
    targets ``(N, ...)``."""
    from mheads.data.from_torch import check_user_dataset

    n, _ = check_user_dataset(ds, name)
    items = []
    for i in range(n):
        items.append(item_tensors(ds[i], f"{name}[{i}]"))
        check_like(*items[-1], items[0], name, i)
    return stack_items(items)


def take(x: Inputs, index: Any) -> Inputs:
    """Rows ``index`` of a tensor or of every tensor of a dict."""
    return {k: v[index] for k, v in x.items()} if isinstance(x, dict) else x[index]


def to_device(x: Inputs, device: torch.device) -> Inputs:
    return {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)


def model_view(x: Inputs) -> Inputs:
    """What the model sees of a batch: :func:`pixels_scaled` of the tensor or of each dict entry."""
    if isinstance(x, dict):
        return {k: pixels_scaled(v) for k, v in x.items()}
    return pixels_scaled(x)


def _rows(x: Inputs) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def input_spec(x: Inputs) -> dict:
    """One example's shape and dtype as stored (a dict input: per key), as a run's meta records it: ``uint8``
    is pixels the model is given as [0, 1] floats (:func:`pixels_scaled`, as :func:`spec_example` builds)."""
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
    return model_view(t)


class AnyShapeData(ABC):
    """What the training loop, evaluation and the task read from data of any shape, resident
    (:class:`TensorData`) or streamed (:class:`~mheads.data.dataset_stream.DatasetStream`): a
    :class:`~mheads.data.batching.BatchSource` whose inputs are given as the model takes them (no
    normalizer) and whose run meta records the input's description (:func:`input_spec`), not an image
    shape."""

    device: torch.device
    shard: tuple[int, int] | None
    classes: list[str] | None
    source: str
    normalizer: Any = None  # no normalization: the inputs are given as the model takes them
    in_channels: int = 1  # not images: the run's meta records "input" (input_spec) instead
    image_size: int = 1

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else 0

    @abstractmethod
    def train_batch(
        self, b: int, generator: torch.Generator | None = None
    ) -> tuple[Inputs, torch.Tensor, Any]:
        """Batch ``b`` (this replica's rows with ``shard``): (inputs, targets, per-member weights (M, B) or
        None)."""

    @abstractmethod
    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[Inputs, torch.Tensor]]:
        """``(inputs, targets)`` of ``split`` in order, ``batch_size`` at a time."""

    @abstractmethod
    def split_size(self, split: str) -> int:
        """Examples in ``split`` (train, test, val or ood; 0 for a split the run does not have)."""

    @abstractmethod
    def example_input(self) -> Inputs:
        """The first training example, a batch of 1 on the CPU, as the model sees it."""

    @abstractmethod
    def input_spec(self) -> dict:
        """One training input's shape and dtype as stored (:func:`input_spec`)."""

    @abstractmethod
    def task_targets(self) -> torch.Tensor:
        """Training targets ``(n, ...)`` on which the task's sizes are read (``mheads.train.task_run``):
        every one where resident, the first where streamed."""

    def describe(self) -> dict:
        y = self.task_targets()
        out: dict[str, Any] = {
            "source": self.source,
            "classes": self.classes,
            "train": self.split_size("train"),
            "test": self.split_size("test"),
            "input": self.input_spec(),
            "target": {"shape": list(y.shape[1:]), "dtype": str(y.dtype).removeprefix("torch.")},
        }
        if self.split_size("val"):
            out["val"] = self.split_size("val")
        return out


@dataclass
class TensorData(AnyShapeData):
    """The decoded splits on the training device and the batching state (see the module docstring)."""

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
    ood_x: Any = field(default=None)

    def train_batch(self, b: int, generator: torch.Generator | None = None):
        idx = self.plan.indices(b)
        idx = idx[shard_rows(self.shard, len(idx))].to(self.device)
        w = self.weights[:, idx] if self.weights is not None else None
        return model_view(take(self.train_x, idx)), self.train_y[idx], w

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
            yield model_view(take(xs, slice(i, i + batch_size))), ys[i : i + batch_size]

    def example_input(self) -> Inputs:
        return to_device(model_view(take(self.train_x, slice(0, 1))), torch.device("cpu"))

    def input_spec(self) -> dict:
        return input_spec(self.train_x)

    def task_targets(self) -> torch.Tensor:
        return self.train_y

    def target_shape(self) -> tuple[int, ...]:
        return tuple(self.train_y.shape[1:])


def _subset(x: Inputs, y: torch.Tensor, rows: torch.Tensor) -> tuple[Inputs, torch.Tensor]:
    """Rows ``rows`` of a split (increasing positions: all of them when as many as the split has, and then
    no copy)."""
    return (x, y) if len(rows) == len(y) else (take(x, rows), y[rows])


def refuse_normalize(d: Any) -> None:
    """Refuse ``data.normalize`` mean_image or per_channel for inputs read as tensors, which reach the model
    as stored (uint8 as [0, 1] floats): training would silently ignore it. Training calls it, but for a
    resumed run that recorded the mode before null was the default (:mod:`mheads.train.resume_checks`: it
    trained on its inputs as stored); evaluation and prediction do not."""
    if d.normalize not in (None, "none"):
        raise ConfigError(
            f"data.normalize: got {d.normalize!r}; expected null or none for inputs read as tensors (a "
            "table, an .npz file, a mask folder, inputs that are not square images, any task but "
            "classification), which reach the model as stored, uint8 as [0, 1] floats; scale them yourself "
            "(a run folder that recorded it before null was the default resumes as it trained, unnormalized)"
        )


def refuse_image_settings(d: Any) -> None:
    """Refuse the ``data:`` settings that only image classification has (augmentation, class selection)."""
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
    seed = cfg.train.seed
    refuse_image_settings(cfg.data)
    train_x, train_y = train if isinstance(train, tuple) else read_pairs(train, "train")
    test_x, test_y = (
        (train_x, train_y)
        if test is None
        else (test if isinstance(test, tuple) else read_pairs(test, "test"))
    )
    check_splits_alike((take(train_x, 0), train_y[0]), (take(test_x, 0), test_y[0]))
    labels = [y if class_targets(y) else None for y in (train_y, test_y)]
    rows = choose_rows(RowChoice.of(cfg.data), seed, len(train_y), len(test_y), *labels)
    if cfg.task.is_classification and classes is None:
        classes = count_classes(train_y[rows.train], test_y[rows.test], (rows.train, rows.test))
    val = None if rows.val is None else (take(train_x, rows.val), train_y[rows.val])
    train_x, train_y = _subset(train_x, train_y, rows.train)
    test_x, test_y = _subset(test_x, test_y, rows.test)
    return TensorData(
        device=device,
        train_x=to_device(train_x, device),
        train_y=train_y.to(device),
        test_x=to_device(test_x, device),
        test_y=test_y.to(device),
        plan=BatchPlan(len(rows.train), cfg.train.batch_size, seed),
        weights=bagging_weights(len(rows.train), cfg.model.members, seed, cfg.data.bagging, device),
        source=source,
        classes=classes,
        val_x=None if val is None else to_device(val[0], device),
        val_y=None if val is None else val[1].to(device),
    )
