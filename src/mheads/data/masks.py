"""Image folders with a parallel folder of masks, as a segmentation Dataset (issue 32).

Layout: `<root>/images/<name>.<png|jpg|...>` and `<root>/masks/<name>.png`, paired by name (the path below
the folder without its suffix; subfolders allowed). `read_mask_folder(root)` returns `TensorPairs` of

- images `(C, H, W)` uint8, decoded by `mheads.data.decode` (16-bit scaled, 32-bit and float refused); C = 1
  when every image is greyscale, else 3 (greyscale ones repeated);
- masks `(H, W)` int64 class indices, from single-channel 8-bit PNGs: mode "L" (the grey value is the class)
  or "P" (the palette index is the class, the palette's colours ignored). Colour, 16-bit and 1-bit masks are
  refused: their values are not class indices. Every value is a class `0..num_classes-1` or `ignore_index`.

Images may have any height and width (not square, and not all the same: the items then differ in size and a
DataLoader needs a batch size of 1 or a collate function), but each mask has its image's size. Refused, in one
line naming the file: an image without a mask or a mask without an image, two files of one name, a file that
is not an image, a bad class value (with its pixel), and everything `mheads.data.files` refuses (FIFOs, links
out of the folder, ...). Each file is read within `MAX_IMAGE_BYTES`, each image within `MAX_PIXELS`, and the
decoded set within `mheads.data.bounds.read_limit()`.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from mheads.core.checks import check_int
from mheads.data.bounds import read_limit, too_big
from mheads.data.decode import IMAGE_SUFFIXES, decode, open_image, read_image_file
from mheads.data.errors import DataError
from mheads.data.files import display, walk_files
from mheads.data.pairs import TensorPairs
from mheads.data.tables import MAX_CLASSES

__all__ = ["MASK_MODES", "read_mask_folder"]

MASK_MODES = ("L", "P")


def _by_name(root: Path, folder: str, suffixes: frozenset[str]) -> dict[str, str]:
    """{name without suffix: file relative to root/folder} for the files below root/folder."""
    top = root / folder
    out: dict[str, str] = {}
    for rel in sorted(walk_files(top)):
        path = PurePosixPath(rel)
        if path.suffix.lower() not in suffixes:
            raise DataError(
                f"{display(top / rel)}: not a {'/'.join(sorted(s[1:] for s in suffixes))} file; "
                f"expected only {folder} in {folder}/"
            )
        stem = str(path.with_suffix(""))
        if stem in out:
            raise DataError(
                f"{display(top / rel)}: a second file named {stem!r} (also {out[stem]}); "
                "expected one file per name"
            )
        out[stem] = rel
    if not out:
        raise DataError(f"{display(top)}: no files; expected {folder} named like their partners")
    return out


def _mask(path: Path, num_classes: int | None, ignore_index: int) -> np.ndarray:
    where = display(path)
    try:
        with open_image(read_image_file(path, where), where) as img:
            if img.format != "PNG" or img.mode not in MASK_MODES:
                raise DataError(
                    f"{where}: {img.format} image of mode {img.mode}; expected a PNG of class "
                    f"indices, mode {' or '.join(MASK_MODES)} (8-bit grey or palette)"
                )
            img.load()
            mask = np.asarray(img, dtype=np.uint8)  # mode P: the palette indices themselves
    except DataError:
        raise
    except Exception as exc:  # any decoder failure on untrusted bytes means a bad file
        raise DataError(
            f"{where}: corrupt or truncated mask ({type(exc).__name__}: {exc}); expected a PNG "
            "of class indices"
        ) from None
    top = num_classes if num_classes is not None else MAX_CLASSES
    bad = (mask >= top) & (mask != ignore_index)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{where}: pixel (row {row}, column {col}) has class {int(mask[row, col])}; expected "
            f"0..{top - 1} or ignore_index {ignore_index}"
        )
    return mask


def read_mask_folder(
    root: str | os.PathLike,
    *,
    images: str = "images",
    masks: str = "masks",
    num_classes: int | None = None,
    ignore_index: int = 255,
) -> TensorPairs:
    """`TensorPairs([image (C, H, W) uint8], [mask (H, W) int64])` in name order (natural to a listing:
    sorted); see the module docstring."""
    if num_classes is not None:
        check_int("num_classes", num_classes, 1, 255)
    check_int("ignore_index", ignore_index, 0, 255)
    if num_classes is not None and ignore_index < num_classes:
        raise ValueError(
            f"ignore_index: got {ignore_index}; expected a value outside the classes 0..{num_classes - 1}"
        )
    root = Path(root)
    for folder, other in ((images, masks), (masks, images)):
        if not (root / folder).is_dir():
            raise DataError(
                f"{display(root / folder)}: no such folder; expected {folder}/ beside {other}/ "
                f"in {display(root)}"
            )
    image_files = _by_name(root, images, IMAGE_SUFFIXES)
    mask_files = _by_name(root, masks, frozenset({".png"}))
    for a, b, folder in ((image_files, mask_files, masks), (mask_files, image_files, images)):
        lone = sorted(set(a) - set(b))
        if lone:
            other = images if folder == masks else masks
            raise DataError(
                f"{display(root / other / a[lone[0]])}: no partner in {folder}/ (expected "
                f"{folder}/{lone[0]}.*); every image needs a mask of the same name"
            )
    limit, used = read_limit(), 0
    pixels, labels = [], []
    for name in sorted(image_files):
        where = display(root / images / image_files[name])
        picture = np.array(decode(read_image_file(root / images / image_files[name], where), where))
        mask = _mask(root / masks / mask_files[name], num_classes, ignore_index)
        if mask.shape != picture.shape[:2]:
            raise DataError(
                f"{display(root / masks / mask_files[name])}: {mask.shape[1]}x{mask.shape[0]} "
                f"pixels; expected its image's size, {picture.shape[1]}x{picture.shape[0]}"
            )
        used += picture.size * 3 + mask.size * 9  # RGB at worst, the mask as uint8 and int64
        if used > limit:
            raise too_big(display(root), used, limit, "decodes to at least")
        pixels.append(picture)
        labels.append(torch.from_numpy(mask.astype(np.int64)))
    grey = all(p.ndim == 2 for p in pixels)
    out = []
    for p in pixels:
        if p.ndim == 2:
            p = p[None] if grey else np.repeat(p[None], 3, axis=0)
        else:
            p = p.transpose(2, 0, 1)
        out.append(torch.from_numpy(np.ascontiguousarray(p)))
    return TensorPairs(out, labels)
