"""One image file, from untrusted bytes to 8-bit pixels: the decoder that resident loading, streaming workers
and ``mheads predict`` share, so an image gives the same pixels whichever of them reads it.

Bounds, checked before the image is allocated:

- ``MAX_IMAGE_BYTES`` per file (512 MiB), from its size on disk before a byte is read
  (:func:`read_image_file`, :func:`mheads.data.files.read_regular`): every 8-bit image the pixel bound admits
  fits, even stored uncompressed (4 bytes a pixel), while a 12 GiB file that merely starts like a JPEG is
  refused instead of read whole (by each streaming worker that draws it).
- ``MAX_PIXELS`` per image (Pillow's own decompression-bomb threshold), from the header before decoding.

Pixel values: mheads trains on 8-bit pixels (0..255, ``Split.images``). How each kind of image gets there:

- 8-bit images (greyscale, palette, RGB, RGBA, CMYK, ...) are used as stored; Pillow converts colour modes
  to RGB (alpha dropped) and, for a greyscale model, RGB to its luma.
- 16-bit images (greyscale PNG and TIFF, 16-bit PGM/PPM) keep their high byte, ``v >> 8``: the type's full
  range 0..65535 maps onto 0..255, and 8-bit data widened by ``v * 257`` or ``v << 8`` comes back exactly.
  Pillow reads 16-bit colour PNGs the same way, so greyscale and colour agree. (Pillow's own conversion of a
  16-bit mode to "L" clips at 255 instead: a 16-bit scan would decode almost all white.)
- 32-bit integer (mode I, e.g. an int32 TIFF) and floating-point (mode F, a float TIFF) images are refused,
  naming the file and the mode: the file does not say which values are black and white (floats may be 0..1,
  0..255 or physical units), and any guess would train on wrong pixels without a word. Convert them to 8-
  or 16-bit first.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image

from mheads.data.errors import DataError
from mheads.data.files import read_regular

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_BYTES",
    "MAX_PIXELS",
    "as_8bit",
    "check_pixels",
    "decode",
    "open_image",
    "read_image_file",
]

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp"}
)
MAX_IMAGE_BYTES = 512 * 2**20

# Pillow's own decompression-bomb threshold (Image.MAX_IMAGE_PIXELS), enforced as an error on every image:
# Pillow only warns between it and twice it, and a 12000x12000 header would allocate 432 MB per image first.
MAX_PIXELS = 89_478_485

_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Formats whose mode "I" holds 16-bit samples (Pillow widens 16-bit PGM/PPM, and older Pillows 16-bit PNG,
# to mode I scaled to 0..65535); mode I from any other format (an int32 TIFF) has no known range.
_SIXTEEN_BIT_AS_I = frozenset({"PNG", "PPM"})
_GREY = frozenset({"1", "L", "LA", "La"})
_FORMATS = "/".join(sorted(s[1:] for s in IMAGE_SUFFIXES))


def check_pixels(size: tuple[int, int], where: str) -> None:
    """Refuse an image whose header declares more than ``MAX_PIXELS`` pixels, before it is decoded."""
    w, h = size
    if w * h > MAX_PIXELS:
        raise DataError(
            f"{where}: image header declares {w}x{h} pixels; refused above {MAX_PIXELS:,} "
            "pixels (a decompression bomb, or an image to resize before training)"
        )


def read_image_file(path: str | os.PathLike, where: str | None = None) -> bytes:
    """The bytes of the image file at ``path``: a regular file (not a FIFO or device) of at most
    ``MAX_IMAGE_BYTES``, refused (``DataError``, naming the file) before reading otherwise."""
    return read_regular(path, str(path) if where is None else where, max_bytes=MAX_IMAGE_BYTES)


def open_image(data: bytes, where: str) -> Image.Image:
    """``Image.open`` on untrusted bytes, refusing (``DataError``) an image declaring too many pixels before
    anything is decoded; Pillow's own bomb warning (an error under ``-W error``) is left to this check."""
    if len(data) > MAX_IMAGE_BYTES:
        raise DataError(
            f"{where}: image file of {len(data):,} bytes; image files above "
            f"{MAX_IMAGE_BYTES:,} bytes are refused"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise DataError(
                f"{where}: image header declares more than {2 * MAX_PIXELS:,} pixels; refused "
                f"above {MAX_PIXELS:,} (a decompression bomb, or an image to resize)"
            ) from None
    try:
        check_pixels(img.size, where)
    except DataError:
        img.close()
        raise
    return img


def _sixteen_to_8bit(img: Image.Image, where: str) -> Image.Image:
    a = np.asarray(img)  # (H, W) uint16 in the file's byte order, or int32 for mode I
    if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
        raise DataError(
            f"{where}: {img.format} image (mode {img.mode}) with values {int(a.min())}.."
            f"{int(a.max())}, outside the 16-bit range 0..65535 its format allows"
        )
    return Image.fromarray((a.astype(np.uint32) >> 8).astype(np.uint8))  # v >> 8: see the module docstring


def as_8bit(img: Image.Image, where: str, channels: int | None = None) -> Image.Image:
    """``img`` (decoded) as 8-bit pixels: mode "L" for ``channels`` 1, "RGB" for 3; ``None`` keeps a greyscale
    image grey and makes every other image RGB. 16-bit and 32-bit images follow the module docstring."""
    mode = img.mode
    if mode in _SIXTEEN_BIT or (mode == "I" and img.format in _SIXTEEN_BIT_AS_I):
        img = _sixteen_to_8bit(img, where)
    elif mode in ("I", "F") or mode.startswith(("I;", "F;")):
        kind = "floating-point" if mode.startswith("F") else "32-bit integer" if mode == "I" else "integer"
        raise DataError(
            f"{where}: {kind} image (mode {mode}); its range of values is not in the file, so it is not "
            "guessed: convert it to an 8-bit or 16-bit image (PNG or TIFF) first"
        )
    grey = img.mode in _GREY
    target = "L" if (channels == 1 or (channels is None and grey)) else "RGB"
    if img.mode == target:
        return img
    try:
        return img.convert(target)
    except ValueError as exc:  # a mode Pillow cannot convert (LAB, ...)
        raise DataError(
            f"{where}: image mode {img.mode} cannot be read as {target} ({exc}); expected a "
            "greyscale or colour image of 8 or 16 bits per channel"
        ) from None


def decode(data: bytes, where: str, channels: int | None = None) -> Image.Image:
    """Decode an image file's bytes to 8-bit pixels (:func:`as_8bit`): mode "L" for ``channels`` 1, "RGB"
    for 3; ``None`` keeps greyscale images grey and makes every other image RGB."""
    try:
        with open_image(data, where) as img:
            img.load()  # decode now so a truncated file fails here, naming the file
            return as_8bit(img, where, channels)  # leaving the block closes the file, not the pixels
    except DataError:
        raise
    except Exception as exc:  # any decoder failure on untrusted bytes means a bad file
        raise DataError(
            f"{where}: corrupt or truncated image ({type(exc).__name__}: {exc}); expected a readable "
            f"{_FORMATS} file"
        ) from exc
