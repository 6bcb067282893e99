"""Image-folder trees: ``train/<class>/*.png|jpg`` and ``test/<class>/...`` (``val/`` also accepted).

Classes are the class folder names sorted alphabetically, unless a ``classes.txt`` at the root lists
them in label order. Images are decoded to 8-bit pixels by :mod:`mheads.data.decode` (16-bit images
scaled, 32-bit and float images refused); a data set is greyscale (C = 1) when every image is,
otherwise RGB (C = 3, greyscale images repeated over the three channels). All images must
have the same size: resizing changes the data, so it is left to the user.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import numpy as np

from mheads.core.resources import available_memory, gib
from mheads.data.dataset import Split
from mheads.data.decode import IMAGE_SUFFIXES, MAX_PIXELS, check_pixels, decode, open_image
from mheads.data.errors import DataError
from mheads.data.labels import CLASSES_FILE, read_classes_file
from mheads.data.sources import Source

__all__ = [
    "BAD_IMAGE_ADVICE",
    "IMAGE_SUFFIXES",
    "LAYOUT",
    "MAX_PIXELS",
    "check_pixels",
    "decode_image",
    "images_by_split",
    "match",
    "natural_key",
    "open_image",
    "ordered_files",
    "read",
    "read_split",
]

LAYOUT = "an image folder (train/<class>/*.png|jpg and test/<class>/*.png|jpg)"
_TEST_SPLITS = ("test", "val")
# what a file that does not decode tells the reader to do (data.on_bad_image skips only streamed images)
BAD_IMAGE_ADVICE = "remove or replace it"


def images_by_split(names: set[str]) -> dict[str, dict[str, list[str]]]:
    """{split: {class: [file names relative to root]}} for split/class/.../file.ext image files."""
    found: dict[str, dict[str, list[str]]] = {}
    for name in names:
        parts = PurePosixPath(name).parts
        if (
            len(parts) >= 3
            and parts[0] in ("train", *_TEST_SPLITS)
            and PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES
        ):
            found.setdefault(parts[0], {}).setdefault(parts[1], []).append(name)
    return found


def match(names: set[str]) -> list[str] | None:
    found = images_by_split(names)
    if not found:
        return None
    missing = [] if "train" in found else ["train/<class>/*.png|jpg"]
    if not any(s in found for s in _TEST_SPLITS):
        missing.append("test/<class>/*.png|jpg")
    return missing


def natural_key(name: str) -> list[object]:
    # "img2.png" before "img10.png", as a person numbering files expects.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode one image file into (H, W) uint8 for greyscale or (H, W, 3) uint8 for colour
    (:func:`mheads.data.decode.decode`: 16-bit images scaled, 32-bit and float images refused)."""
    return np.asarray(decode(data, where))


def _read_images(
    source: Source, files: list[str], labels: np.ndarray, advice: str = BAD_IMAGE_ADVICE
) -> Split:
    """Decode `files` (already in data set order) into one uint8 (N, C, H, W) array, written image by image
    into its final layout (no second full-size copy: a decoded set near the size of memory still fits). A file
    that does not decode is one line naming it, ending with `advice` (what the reader can do about it)."""
    index = {name: i for i, name in enumerate(files)}
    pixels: np.ndarray | None = None  # (N, 3, H, W), allocated once the first image gives the size
    first = ""
    colour = False
    for name, data in source.read_many(files):
        try:
            image = decode_image(data, source.where(name))
        except DataError as err:
            raise DataError(f"{err}; {advice}") from None
        if pixels is None:
            need = len(files) * 3 * image.shape[0] * image.shape[1]
            if need > available_memory():
                size = f"{image.shape[1]}x{image.shape[0]}"
                avail = gib(available_memory())
                raise DataError(
                    f"{source.where(name)}: {len(files):,} images of {size} decode to "
                    f"{gib(need)}, more than the {avail} of memory available; stream them "
                    "instead (data.loader: stream)"
                )
            pixels = np.empty((len(files), 3, image.shape[0], image.shape[1]), dtype=np.uint8)
            first = source.where(name)
        if image.shape[:2] != pixels.shape[2:]:
            raise DataError(
                f"{source.where(name)}: image is {image.shape[1]}x{image.shape[0]} (WxH) but {first} is "
                f"{pixels.shape[3]}x{pixels.shape[2]}; all images must have the same size (resize them first)"
            )
        colour |= image.ndim == 3
        pixels[index[name]] = image.transpose(2, 0, 1) if image.ndim == 3 else image[None]
    assert pixels is not None  # callers pass at least one file
    return Split(pixels if colour else np.ascontiguousarray(pixels[:, :1]), labels)


def ordered_files(source: Source, root: str) -> tuple[list[str], list[tuple[list[str], np.ndarray]]]:
    """The class names, and per split (train, then test) its image files (named relative to the source) with
    their labels, in data set order: by label, then natural file order within a class. Every reader of an
    image folder, resident or streamed, uses this order: example ``i`` is one image for all of them."""
    prefix = f"{root}/" if root else ""
    names = source.names_under(root)
    found = images_by_split(names)
    test_split = next(s for s in _TEST_SPLITS if s in found)
    train, test = found["train"], found[test_split]
    for cls in test:
        if cls not in train:
            raise DataError(
                f"{source.where(f'{prefix}{test_split}/{cls}')}: class folder has no matching "
                f"train/{cls} folder; "
                f"training classes are {sorted(train)}"
            )
    if CLASSES_FILE in names:
        classes = read_classes_file(source, prefix + CLASSES_FILE)
        for cls in train:
            if cls not in classes:
                raise DataError(
                    f"{source.where(f'{prefix}train/{cls}')}: class folder is not listed in "
                    f"{source.where(prefix + CLASSES_FILE)}; listed classes are {classes}"
                )
    else:
        classes = sorted(train)
    label_of = {cls: i for i, cls in enumerate(classes)}
    splits = []
    for by_class in (train, test):
        ordered = [
            (label_of[cls], f)
            for cls in sorted(by_class, key=label_of.__getitem__)
            for f in sorted(by_class[cls], key=natural_key)
        ]
        splits.append(
            ([prefix + f for _, f in ordered], np.array([label for label, _ in ordered], dtype=np.int64))
        )
    return classes, splits


def read(source: Source, root: str, name: str) -> tuple[Split, Split, list[str]]:
    classes, splits = ordered_files(source, root)
    train_split, test_split_data = (_read_images(source, files, labels) for files, labels in splits)
    if train_split.images.shape[1] != test_split_data.images.shape[1]:
        # One split all greyscale, the other colour: promote the greyscale one so both share C.
        train_split, test_split_data = (
            Split(np.repeat(s.images, 3, axis=1) if s.images.shape[1] == 1 else s.images, s.labels)
            for s in (train_split, test_split_data)
        )
    return train_split, test_split_data, classes


def read_split(
    source: Source, root: str, split: str, advice: str = BAD_IMAGE_ADVICE
) -> tuple[Split, list[str]]:
    """One split alone (``"train"`` or ``"test"``), decoded as :func:`read` decodes it, and the class names:
    what ``mheads eval`` reads, never opening the other split's images (``advice``: what its error for a file
    that does not decode ends with). Not promoted to colour for the other split (the caller converts
    channels)."""
    classes, splits = ordered_files(source, root)
    files, labels = splits[0 if split == "train" else 1]
    return _read_images(source, files, labels, advice), classes
