"""In-memory data sets: uint8 images and int64 labels, the form every reader produces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mheads.data.errors import DataError

__all__ = ["Dataset", "Split"]


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a data set.

    images: (N, C, H, W) uint8, pixel values 0..255 as stored on disk.
    labels: (N,) int64 class indices.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.images, np.ndarray) or self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise DataError(
                f"Split.images must be a uint8 array of shape (N, C, H, W), got {_describe(self.images)}"
            )
        if not isinstance(self.labels, np.ndarray) or self.labels.dtype != np.int64 or self.labels.ndim != 1:
            raise DataError(
                f"Split.labels must be an int64 array of shape (N,), got {_describe(self.labels)}"
            )
        if len(self.images) != len(self.labels):
            raise DataError(
                f"Split has {len(self.images)} images but {len(self.labels)} labels; "
                "expected one label per image"
            )

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A named data set with a train and a test split sharing one image shape and one class list."""

    name: str
    train: Split
    test: Split
    classes: list[str]

    def __post_init__(self) -> None:
        if not self.classes:
            raise DataError(f"data set {self.name!r} has no classes; expected at least one class name")
        if self.train.images.shape[1:] != self.test.images.shape[1:]:
            raise DataError(
                f"data set {self.name!r}: train images are {_shape(self.train.images.shape[1:])} "
                "but test images are "
                f"{_shape(self.test.images.shape[1:])}; both splits must share one image shape"
            )
        for split_name, split in (("train", self.train), ("test", self.test)):
            if not len(split):
                raise DataError(
                    f"data set {self.name!r}: the {split_name} split has no images; expected at "
                    "least one (checked before training, not after it)"
                )
        for split_name, split in (("train", self.train), ("test", self.test)):
            if len(split) and (split.labels.min() < 0 or split.labels.max() >= len(self.classes)):
                bad = int(split.labels.min() if split.labels.min() < 0 else split.labels.max())
                raise DataError(
                    f"data set {self.name!r}: {split_name} label {bad} is outside the class range "
                    f"0..{len(self.classes) - 1}"
                )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        c, h, w = self.train.images.shape[1:]
        return (int(c), int(h), int(w))


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(s)) for s in shape)


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {tuple(value.shape)}"
    return type(value).__name__
