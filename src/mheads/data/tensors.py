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
:class:`~mheads.data.tensor_data.AnyShapeData` (its own module) is what both give the training loop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mheads.data.errors import DataError

__all__ = [
    "MAX_INPUT_ELEMENTS",
    "as_tensor",
    "check_like",
    "check_splits_alike",
    "check_same",
    "input_spec",
    "is_image_input",
    "item_tensors",
    "model_view",
    "pixels_scaled",
    "read_pairs",
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
