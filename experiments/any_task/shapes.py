"""Synthetic segmentation with ambiguous labels (issue 32, example c): greyscale images `(1, H, W)`, 32 x 48
by default (not square), each showing one shape on a noisy background.

Classes: 0 background, 1 "square", 2 "disc". A square is always class 1 and a disc class 2; a diamond (the
ambiguous shape, drawn with probability `ambiguous`) is labelled 1 or 2 by a fair coin per image, so no
prediction can be right on it more than half the time, while an ensemble whose members commit to different
answers has an oracle right on every diamond. Pixels within half a pixel of a shape's outline are
`IGNORE_INDEX` (255), as VOC leaves its object boundaries unlabelled.

`make(n, seed, height=32, width=48, ambiguous=0.3) -> (TensorPairs(images (N, 1, H, W) float32 in [0, 1],
masks (N, H, W) int64), is_ambiguous (N,) bool)`; `write_folder(root, pairs)` saves them as `images/<i>.png`
and `masks/<i>.png` (mode L), the layout `mheads.data.masks.read_mask_folder` reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mheads.core.checks import check_int, check_number
from mheads.data.pairs import TensorPairs

IGNORE_INDEX = 255
CLASSES = ("background", "square", "disc")
_ORDER = {"square": np.inf, "disc": 2, "diamond": 1}  # the norm whose ball is each shape


def make(
    n: int, seed: int, height: int = 32, width: int = 48, ambiguous: float = 0.3
) -> tuple[TensorPairs, torch.Tensor]:
    """See the module docstring; the same data for the same arguments."""
    check_int("n", n, 1)
    check_int("height", height, 12)
    check_int("width", width, 12)
    check_number("ambiguous", ambiguous, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    images = np.empty((n, 1, height, width), dtype=np.float32)
    masks = np.empty((n, height, width), dtype=np.int64)
    is_ambiguous = np.zeros(n, dtype=bool)
    for i in range(n):
        if rng.random() < ambiguous:
            kind, label = "diamond", int(rng.integers(1, 3))
            is_ambiguous[i] = True
        else:
            kind = "square" if rng.random() < 0.5 else "disc"
            label = 1 if kind == "square" else 2
        radius = rng.uniform(4.0, min(height, width) / 3)
        cy, cx = rng.uniform(radius, height - radius), rng.uniform(radius, width - radius)
        dist = np.linalg.norm(np.stack([rows - cy, cols - cx]), ord=_ORDER[kind], axis=0)
        inside = dist < radius
        images[i, 0] = np.clip(np.where(inside, 0.8, 0.2) + 0.05 * rng.standard_normal((height, width)), 0, 1)
        masks[i] = np.where(np.abs(dist - radius) < 0.5, IGNORE_INDEX, np.where(inside, label, 0))
    return TensorPairs(torch.from_numpy(images), torch.from_numpy(masks)), torch.from_numpy(is_ambiguous)


def write_folder(root: str | Path, pairs: TensorPairs) -> Path:
    """`root/images/<i>.png` (8-bit grey) and `root/masks/<i>.png` (class indices, mode L) for each pair."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(len(pairs)):
        image, mask = pairs[i]
        pixels = (image[0].numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels, "L").save(root / "images" / f"{i:05d}.png")
        Image.fromarray(mask.numpy().astype(np.uint8), "L").save(root / "masks" / f"{i:05d}.png")
    return root
