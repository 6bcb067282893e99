"""A user's map-style ``torch.utils.data.Dataset`` of ``(image, label)`` pairs as an in-memory
:class:`Dataset`.

Images may be uint8 tensors or arrays ``(C, H, W)`` (or ``(H, W)``), PIL images, or float tensors in [0, 1]
(what torchvision's ``ToTensor`` gives; converted back to 0..255 exactly). Normalization happens later, on the
training device (``data.normalize``), as for every other source. Labels are integers (or 0-d tensors).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from mheads.data.dataset import Dataset, Split
from mheads.data.errors import DataError

__all__ = ["from_torch_datasets"]


def _image(x, where: str) -> np.ndarray:
    if hasattr(x, "getbands"):  # a PIL image
        a = np.asarray(x)
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return np.ascontiguousarray(a, dtype=np.uint8)
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3:
        raise DataError(f"{where}: image of shape {tuple(t.shape)}; expected (C, H, W) or (H, W)")
    if t.dtype == torch.uint8:
        return t.numpy()
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()) or float(t.min()) < 0 or float(t.max()) > 1:
            raise DataError(f"{where}: float image with values outside [0, 1] (min {float(t.min()):.3g}, "
                            f"max {float(t.max()):.3g}); give uint8 images or floats in [0, 1] (ToTensor()): "
                            "mheads normalizes on the training device (data.normalize)")
        return (t * 255).round().to(torch.uint8).numpy()
    raise DataError(f"{where}: image of dtype {t.dtype}; expected uint8, float in [0, 1] or a PIL image")


def _label(y, where: str) -> int:
    try:
        value = int(y.item() if isinstance(y, torch.Tensor) else y)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(f"{where}: label {y!r} is not an integer class index") from None
    if value < 0:
        raise DataError(f"{where}: label {value} is negative; expected a class index >= 0")
    return value


def _split(ds, name: str, progress: bool) -> Split:
    try:
        n = len(ds)
    except TypeError:
        raise DataError(f"{name}: {type(ds).__name__} has no len(); give a map-style torch Dataset") from None
    if n == 0:
        raise DataError(f"{name}: the data set is empty")
    images, labels = [], []
    for i in tqdm(range(n), desc=f"reading {name}", disable=not progress, leave=False):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"{name}[{i}]: got {type(item).__name__}; expected an (image, label) pair")
        images.append(_image(item[0], f"{name}[{i}]"))
        labels.append(_label(item[1], f"{name}[{i}]"))
        if images[-1].shape != images[0].shape:
            raise DataError(f"{name}[{i}]: image shape {images[-1].shape} differs from {name}[0]'s "
                            f"{images[0].shape}; every image must have one (C, H, W) shape")
    return Split(np.stack(images), np.asarray(labels, dtype=np.int64))


def from_torch_datasets(train, test=None, *, name: str = "python", progress: bool = False) -> Dataset:
    """Read ``train`` (and ``test``; None: evaluate on ``train``) into memory. Class names come from the
    data set's ``classes`` attribute when it has one (torchvision's do), else ``"0"``, ``"1"``, ..."""
    tr = _split(train, "train", progress)
    te = _split(test, "test", progress) if test is not None else tr
    num_classes = int(max(tr.labels.max(), te.labels.max())) + 1
    classes = [str(c) for c in getattr(train, "classes", [])] or [str(i) for i in range(num_classes)]
    if len(classes) < num_classes:
        raise DataError(f"train.classes names {len(classes)} classes but labels go up to {num_classes - 1}")
    return Dataset(name=name, train=tr, test=te, classes=classes)
