"""The geometric transforms of streamed images, done in DataLoader workers on decoded Pillow images.

Workers hand the training process square uint8 tensors of ``data.image_size`` pixels a side; everything that
is cheap on a whole batch (normalization, pad-and-crop, flips) happens afterwards on the training device,
exactly as for device-resident data.

Images come to them decoded to 8-bit pixels by :func:`mheads.data.decode.decode` (re-exported here).

- ``eval_view``: resize the shorter side to ``resize`` (bilinear, antialiased) and take the centre
  ``size`` x ``size`` square: ImageNet's "resize 256, centre crop 224" with ``resize=256, size=224``. An image
  already ``size`` x ``size`` with ``resize == size`` is returned untouched, so a set of fixed-size images
  streams with the same pixels as when resident.
- ``random_crop``: shorter side to ``resize``, then a ``size`` x ``size`` square at a random offset: the
  AlexNet / Caffe ImageNet training crop (256 -> random 224), the evaluation view's training counterpart.
- ``random_resized_crop``: a crop of random area (``scale`` of the image) and aspect ratio (3/4 to 4/3, drawn
  log-uniformly), resized to ``size`` x ``size``: the Inception / ResNet training crop (Szegedy et al. 2015),
  with torchvision's rule of ten tries and a centre crop as the fallback. Its randomness is a NumPy generator
  the caller seeds per example, so a crop is a function of the run seed and the example's place in training.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from mheads.data.decode import decode

__all__ = ["decode", "eval_view", "random_crop", "random_resized_crop", "to_tensor"]

try:
    _BILINEAR = Image.Resampling.BILINEAR
except AttributeError:  # Pillow 9.0 (pyproject allows it) has no Resampling enum, only the module's constant
    # Pillow >= 9.1 sets the module-level names dynamically, so the checker does not see them
    _BILINEAR = Image.BILINEAR  # type: ignore[attr-defined]


def eval_view(img: Image.Image, size: int, resize: int) -> Image.Image:
    """Shorter side to ``resize``, then the centre ``size`` x ``size`` crop (``resize >= size``)."""
    if img.size == (size, size) and resize == size:
        return img
    img = _resize_shorter(img, size, resize)
    nw, nh = img.size
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def _resize_shorter(img: Image.Image, size: int, resize: int) -> Image.Image:
    w, h = img.size
    scale = resize / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    return img if (nw, nh) == (w, h) else img.resize((nw, nh), _BILINEAR)


def random_crop(img: Image.Image, size: int, resize: int, rng: np.random.Generator) -> Image.Image:
    """Shorter side to ``resize``, then the ``size`` x ``size`` square at a uniformly random offset."""
    img = _resize_shorter(img, size, resize)
    w, h = img.size
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return img.crop((left, top, left + size, top + size))


def random_resized_crop(
    img: Image.Image,
    size: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Image.Image:
    """A random crop of area ``scale`` and aspect ``ratio`` resized to ``size`` x ``size``."""
    w, h = img.size
    area = w * h
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            break
    else:  # no draw fitted: the centre crop at the nearest allowed aspect ratio
        aspect = w / h
        if aspect < ratio[0]:
            cw, ch = w, round(w / ratio[0])
        elif aspect > ratio[1]:
            cw, ch = round(h * ratio[1]), h
        else:
            cw, ch = w, h
        top, left = (h - ch) // 2, (w - cw) // 2
    return img.resize((size, size), _BILINEAR, box=(left, top, left + cw, top + ch))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """(C, H, W) uint8."""
    a = np.array(img, dtype=np.uint8)  # a writable copy: torch.from_numpy warns about read-only arrays
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(a))
