"""Class names and label checks shared by the readers."""

from __future__ import annotations

import numpy as np

from mheads.data.errors import DataError
from mheads.data.sources import Source

__all__ = [
    "CLASSES_FILE",
    "FASHION_MNIST_CLASSES",
    "check_label_range",
    "classes_from_labels",
    "read_classes_file",
]

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


def classes_from_labels(labels: np.ndarray, where: str) -> list[str]:
    """Class names "0", "1", ... for a data set without a classes file, whose labels must then be dense: every
    label 0..max occurs. One stray label far above the others would otherwise size a model with that many
    classes (a label 200000 among 0..9 makes 200,001), and a label of 2**40 a list of 2**40 names; the check
    allocates nothing sized by a label. `where` names the file holding the largest label."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return []
    present = np.unique(labels)  # sorted; sized by the examples, not by the labels' values
    top = int(present[-1])
    if int(present[0]) < 0:
        raise DataError(f"{where}: label {int(present[0])} is negative; expected class indices 0, 1, ...")
    if len(present) != top + 1:
        gap = int(np.flatnonzero(present != np.arange(len(present)))[0])
        count = int(np.count_nonzero(labels == top))
        raise DataError(
            f"{where}: labels run up to {top} but {top + 1 - len(present)} of 0..{top} never occur "
            f"(e.g. {gap}); label {top} has {count} example(s): a stray label? without a {CLASSES_FILE} "
            f"every label 0..max must occur; list the class names in a {CLASSES_FILE} beside the data "
            "(every label must then be below their count), or fix the labels"
        )
    return [str(i) for i in range(top + 1)]
