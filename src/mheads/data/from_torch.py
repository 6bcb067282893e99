"""A user's map-style ``torch.utils.data.Dataset`` of ``(image, label)`` pairs as an in-memory
:class:`Dataset`, and the checks every user Dataset passes before training (here and when streamed).

Images may be uint8 tensors or arrays ``(C, H, W)`` (or ``(H, W)``), PIL images (16-bit ones scaled to 8
bits as image files are), or float tensors in [0, 1] (what torchvision's ``ToTensor`` gives; converted back
to 0..255 exactly); never a path (a Dataset returns the image itself). Normalization happens later, on the
training device (``data.normalize``), as for every other source.

Labels are integer class indices: Python or numpy integers, integer or integral float 0-d tensors. A float
label that is not a whole number (2.7), a bool, a string or a vector is refused, never rounded or truncated.
The class count is ``len(dataset.classes)`` when the Dataset has ``classes``; otherwise the largest label
plus one, refused when most of those classes would have no example (one stray label of 200000 among ten
classes would silently build a 200,001-class model).
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import torch
from tqdm import tqdm

from mheads.data.dataset import Dataset, Split
from mheads.data.decode import as_8bit
from mheads.data.errors import DataError

__all__ = ["MAX_LABEL", "check_user_dataset", "class_names", "from_torch_datasets"]

log = logging.getLogger(__name__)

MAX_LABEL = 2**31 - 1  # far above any class count; keeps labels exact in int64 arrays and tensors
_SPARE_CLASSES = 16  # class indices without an example allowed beyond the number of distinct labels
_LONG_SCAN = 10_000  # reading more items than this before training is announced


def check_user_dataset(ds, name: str):
    """``ds``'s length and first example, once a map-style Dataset of ``(image, label)`` pairs is confirmed:
    a one-line ``DataError`` for an IterableDataset, no ``len()``, an empty set, items that are not pairs
    (a dict) or images that are not images (a path), before anything else reads it."""
    if isinstance(ds, torch.utils.data.IterableDataset):
        raise DataError(
            f"{name}: got an IterableDataset ({type(ds).__name__}); expected a map-style "
            "Dataset (__getitem__ and __len__): examples are read by index, so that a resumed "
            "run sees the very batches it would have seen"
        )
    try:
        n = len(ds)
    except (TypeError, NotImplementedError):
        raise DataError(f"{name}: {type(ds).__name__} has no len(); give a map-style torch Dataset") from None
    if n == 0:
        raise DataError(f"{name}: the data set is empty (len 0); expected at least one (input, target) pair")
    try:
        first = ds[0]
    except (IndexError, KeyError) as err:
        raise DataError(
            f"{name}[0]: {type(ds).__name__} has len {n} but indexing it with 0 raised "
            f"{type(err).__name__} {err}; expected __getitem__(i) for i in 0..{n - 1}"
        ) from None
    pair(first, f"{name}[0]")
    return n, first


def pair(item, where: str):
    """``(image, label)`` of a Dataset item, or a ``DataError`` saying what the item is instead."""
    if isinstance(item, dict):
        raise DataError(  # any task reads pairs: a dict item (HF style) says which entries to pair
            f"{where}: got a dict with keys {sorted(map(str, item))[:6]}; expected an (input, target) "
            "tuple, e.g. (image, label): return the pair from __getitem__, e.g. (item['x'], item['y'])"
        )
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise DataError(
            f"{where}: got {type(item).__name__}; expected an (input, target) pair, e.g. (image, label)"
        )
    x = item[0]
    if isinstance(x, (str, bytes, os.PathLike)):
        raise DataError(
            f"{where}: the image is a {type(x).__name__} ({str(x)[:60]!r}); expected the image "
            "itself (a PIL image, or a uint8 or [0, 1] float tensor or array): open it in "
            "__getitem__, or give mheads.fit the folder path instead of a Dataset"
        )
    return item[0], item[1]


def _image(x, where: str) -> np.ndarray:
    if isinstance(x, (str, bytes, os.PathLike)):
        pair((x, 0), where)
    if hasattr(x, "getbands"):  # a PIL image: 8 bits as an image file gives (16-bit scaled, float refused)
        a = np.asarray(as_8bit(x, where))
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return np.ascontiguousarray(a, dtype=np.uint8)
    try:
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(
            f"{where}: image of type {type(x).__name__}; expected a PIL image, or a uint8 or "
            "[0, 1] float tensor or array"
        ) from None
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3:
        raise DataError(f"{where}: image of shape {tuple(t.shape)}; expected (C, H, W) or (H, W)")
    if t.dtype == torch.uint8:
        return t.numpy()
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()) or float(t.min()) < 0 or float(t.max()) > 1:
            raise DataError(
                f"{where}: float image with values outside [0, 1] (min {float(t.min()):.3g}, "
                f"max {float(t.max()):.3g}); give uint8 images or floats in [0, 1] (ToTensor()): "
                "mheads normalizes on the training device (data.normalize)"
            )
        return (t * 255).round().to(torch.uint8).numpy()
    raise DataError(f"{where}: image of dtype {t.dtype}; expected uint8, float in [0, 1] or a PIL image")


def _label(y, where: str) -> int:
    """``y`` as a class index; anything that is not exactly a non-negative integer is refused (a float label
    is never truncated: 2.7 is not class 2)."""
    value = y
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if int(np.prod(value.shape)) == 1:
            value = value.item()
        else:
            raise DataError(
                f"{where}: label of shape {tuple(value.shape)}; expected one integer class index "
                "(a one-hot or soft label is not a class index)"
            )
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        raise DataError(f"{where}: label {y!r} is a bool; expected an integer class index (0, 1, ...)")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise DataError(
                f"{where}: label {y!r} is not a whole number; expected an integer class index "
                "(float labels are not rounded or truncated)"
            )
        value = int(value)
    if not isinstance(value, int):
        raise DataError(f"{where}: label {y!r} of type {type(y).__name__}; expected an integer class index")
    if value < 0:
        raise DataError(f"{where}: label {value} is negative; expected a class index >= 0")
    if value > MAX_LABEL:
        raise DataError(f"{where}: label {value}; expected a class index of at most {MAX_LABEL}")
    return value


def class_names(dataset, labels: np.ndarray, where=None) -> list[str]:
    """The class names of a user's Dataset ``dataset`` (train) whose labels, with the test split's, are
    ``labels`` (see the module docstring for the class count); a one-line ``DataError`` naming the example
    whose label does not fit. ``where(i)`` names example ``i`` of ``labels`` (default ``train[i]``)."""
    where = where or (lambda i: f"train[{i}]")
    named = getattr(dataset, "classes", None)
    top = int(np.argmax(labels))
    k = int(labels[top]) + 1
    if named is not None:
        names = [str(c) for c in named]
        if k > len(names):
            raise DataError(
                f"{where(top)}: label {k - 1} is outside train.classes, which names {len(names)} "
                f"classes (labels 0..{len(names) - 1})"
            )
        return names
    distinct = len(np.unique(labels))
    if k - distinct > max(distinct, _SPARE_CLASSES):
        raise DataError(
            f"{where(top)}: label {k - 1} would make a {k}-class model, but the labels take only "
            f"{distinct} distinct values; fix the label, or give the train Dataset a `classes` "
            f"attribute naming all {k} classes to train that many"
        )
    return [str(i) for i in range(k)]


def _split(ds, name: str, progress: bool) -> Split:
    n, _ = check_user_dataset(ds, name)
    if n > _LONG_SCAN:
        log.info("reading all %d examples of %s into memory (data.loader: resident)", n, name)
    images, labels = [], []
    for i in tqdm(range(n), desc=f"reading {name}", disable=not progress, leave=False):
        x, y = pair(ds[i], f"{name}[{i}]")
        images.append(_image(x, f"{name}[{i}]"))
        labels.append(_label(y, f"{name}[{i}]"))
        if images[-1].shape != images[0].shape:
            fix = (
                "convert it (PIL: image.convert('RGB') or 'L')"
                if images[-1].shape[0] != images[0].shape[0]
                else "resize them, or give data.image_size to stream them at one size"
            )
            raise DataError(
                f"{name}[{i}]: image shape {images[-1].shape} differs from {name}[0]'s "
                f"{images[0].shape}; every image must have one (C, H, W) shape: {fix}"
            )
    return Split(np.stack(images), np.asarray(labels, dtype=np.int64))


def from_torch_datasets(train, test=None, *, name: str = "python", progress: bool = False) -> Dataset:
    """Read ``train`` (and ``test``; None: evaluate on ``train``) into memory. Class names come from the
    data set's ``classes`` attribute when it has one (torchvision's do), else ``"0"``, ``"1"``, ...
    (see the module docstring for the class count)."""
    tr = _split(train, "train", progress)
    te = _split(test, "test", progress) if test is not None else tr
    n = len(tr.labels)
    labels = tr.labels if te is tr else np.concatenate([tr.labels, te.labels])
    classes = class_names(train, labels, lambda i: f"train[{i}]" if i < n else f"test[{i - n}]")
    return Dataset(name=name, train=tr, test=te, classes=classes)
