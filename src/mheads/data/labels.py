"""Class names and label checks shared by the readers."""

from __future__ import annotations

import numpy as np

from mheads.data.errors import DataError
from mheads.data.sources import Source

__all__ = ["CLASSES_FILE", "FASHION_MNIST_CLASSES", "check_label_range", "read_classes_file"]

# An optional file at a data set's root listing class names in label order, one per line.
CLASSES_FILE = "classes.txt"

# Fashion-MNIST's label order (github.com/zalandoresearch/fashion-mnist, "Labels").
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def read_classes_file(source: Source, name: str) -> list[str]:
    """Class names from a text file: one per line, blank lines ignored, no duplicates."""
    data = source.read(name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{source.where(name)}: not UTF-8 text; expected one class name per line") from exc
    classes = [line.strip() for line in text.splitlines() if line.strip()]
    if not classes:
        raise DataError(f"{source.where(name)}: no class names; expected one class name per line")
    seen: set[str] = set()
    for cls in classes:
        if cls in seen:
            raise DataError(f"{source.where(name)}: class {cls!r} is listed twice; expected each class once")
        seen.add(cls)
    return classes


def check_label_range(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Raise `DataError` naming `where` if any label is outside 0..num_classes-1."""
    if len(labels) == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise DataError(
            f"{where}: label {bad} is outside the class range 0..{num_classes - 1} ({num_classes} classes)"
        )
