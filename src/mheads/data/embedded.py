"""The embedded default data set: a class-balanced subset of Fashion-MNIST shipped in the package.

10,000 training images (1,000 per class) and 2,000 test images (200 per class), 28x28 greyscale,
so that `mheads demo` runs on a fresh machine with no download. Fashion-MNIST is (c) 2017 Zalando SE
under the MIT licence; its notice is in ``embedded/NOTICE``. ``scripts/build_embedded_subset.py``
rebuilds the file from the full idx files with `build_subset`.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np

from mheads.core.checks import check_int
from mheads.data.dataset import Dataset, Split
from mheads.data.errors import DataError

__all__ = [
    "EMBEDDED_FILE",
    "EMBEDDED_NAME",
    "SUBSET_SEED",
    "TEST_PER_CLASS",
    "TRAIN_PER_CLASS",
    "build_subset",
    "load_embedded",
    "save_subset",
]

EMBEDDED_NAME = "fashion-mnist-subset"
EMBEDDED_FILE = "fashion_mnist_subset.npz"
TRAIN_PER_CLASS = 1000
TEST_PER_CLASS = 200
SUBSET_SEED = 0


def _select(labels: np.ndarray, num_classes: int, per_class: int, seed: int, split: str) -> np.ndarray:
    """`per_class` indices of each class, sorted, chosen by a hash of (seed, split, index).

    Ranking by a hash instead of drawing from an RNG keeps the subset identical under any future
    numpy or torch version: it depends on nothing but the seed and the data.
    """
    chosen = []
    for cls in range(num_classes):
        members = np.flatnonzero(labels == cls)
        if len(members) < per_class:
            raise DataError(
                f"{split} split has {len(members)} images of class {cls}; need {per_class} for the subset"
            )
        keys = [hashlib.blake2b(f"{seed}:{split}:{int(i)}".encode(), digest_size=8).digest() for i in members]
        order = sorted(range(len(members)), key=keys.__getitem__)
        chosen.append(members[order[:per_class]])
    return np.sort(np.concatenate(chosen))


def build_subset(
    full: Dataset,
    train_per_class: int = TRAIN_PER_CLASS,
    test_per_class: int = TEST_PER_CLASS,
    seed: int = SUBSET_SEED,
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """A class-balanced subset of `full` in original order, with the chosen train and test indices."""
    for field, value in (("train_per_class", train_per_class), ("test_per_class", test_per_class)):
        check_int(field, value, 1)
    train_index = _select(full.train.labels, full.num_classes, train_per_class, seed, "train")
    test_index = _select(full.test.labels, full.num_classes, test_per_class, seed, "test")
    subset = Dataset(
        name=EMBEDDED_NAME,
        train=Split(full.train.images[train_index], full.train.labels[train_index]),
        test=Split(full.test.images[test_index], full.test.labels[test_index]),
        classes=list(full.classes),
    )
    return subset, train_index, test_index


def save_subset(file, subset: Dataset, train_index: np.ndarray, test_index: np.ndarray, seed: int) -> None:
    """Write the subset as compressed npz (labels as uint8 to keep the package small)."""
    np.savez_compressed(
        file,
        train_images=subset.train.images,
        train_labels=subset.train.labels.astype(np.uint8),
        test_images=subset.test.images,
        test_labels=subset.test.labels.astype(np.uint8),
        classes=np.array(subset.classes, dtype=str),
        train_index=train_index.astype(np.int32),  # positions in the full train/t10k files, for provenance
        test_index=test_index.astype(np.int32),
        seed=np.array(seed, dtype=np.int64),
    )


def load_embedded() -> Dataset:
    """The embedded Fashion-MNIST subset (images (N, 1, 28, 28) uint8, 10 classes)."""
    resource = resources.files("mheads.data") / "embedded" / EMBEDDED_FILE
    try:
        with resource.open("rb") as handle, np.load(handle, allow_pickle=False) as z:
            return Dataset(
                name=EMBEDDED_NAME,
                train=Split(z["train_images"], z["train_labels"].astype(np.int64)),
                test=Split(z["test_images"], z["test_labels"].astype(np.int64)),
                classes=[str(c) for c in z["classes"]],
            )
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(
            f"{resource}: the embedded data set is missing or damaged ({exc}); "
            "reinstall mheads or rebuild it with "
            "scripts/build_embedded_subset.py"
        ) from exc
