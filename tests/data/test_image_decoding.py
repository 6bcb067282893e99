"""Images of more than 8 bits decode to the right 8-bit values, the same in every reader (resident, streamed,
predict's file read), or are refused naming the file and mode; never clipped by Pillow's mode conversion."""

from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mheads.data import DataError, load_dataset
from mheads.data.decode import as_8bit, decode, read_image_file
from mheads.data.examples import FileExamples, TorchExamples
from mheads.data.imagefolder import decode_image
from mheads.data.index import index_source

# 16-bit values and what v >> 8 makes of them: both ends of the range, 8-bit data widened by * 257 and << 8
WIDE = np.array(
    [
        [0, 255, 256, 257 * 7, 7 << 8, 32768, 65280, 65535],
        [1000, 12345, 257 * 200, 200 << 8, 40000, 50000, 60000, 65534],
    ],
    dtype=np.uint16,
)
NARROW = np.array([[0, 0, 1, 7, 7, 128, 255, 255], [3, 48, 200, 200, 156, 195, 234, 255]], dtype=np.uint8)


def _save(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def _png16_rgb(pixels: np.ndarray) -> bytes:
    """A 16-bit-per-channel colour PNG (Pillow cannot write one): pixels (H, W, 3) uint16."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = pixels.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


SIXTEEN_BIT = {
    "png": lambda: _save(WIDE, "PNG"),  # mode I;16
    "tiff little-endian": lambda: _save(WIDE, "TIFF"),  # mode I;16
    "tiff big-endian": lambda: _save(WIDE.astype(">u2"), "TIFF"),  # mode I;16B
    "pgm": lambda: b"P5\n8 2\n65535\n" + WIDE.astype(">u2").tobytes(),  # mode I (Pillow widens PGM)
}


@pytest.mark.parametrize("kind", sorted(SIXTEEN_BIT))
def test_16bit_greyscale_decodes_to_its_high_byte_in_every_decoder(kind):
    data = SIXTEEN_BIT[kind]()
    np.testing.assert_array_equal(decode_image(data, "x"), NARROW)  # resident
    np.testing.assert_array_equal(np.asarray(decode(data, "x", 1)), NARROW)  # streamed, greyscale model
    np.testing.assert_array_equal(np.asarray(decode(data, "x", 3)), np.repeat(NARROW[..., None], 3, 2))


def test_16bit_colour_png_follows_the_same_rule_as_grey():
    rgb = np.stack([WIDE, WIDE[::-1], np.full_like(WIDE, 65535)], axis=-1)
    want = np.stack([NARROW, NARROW[::-1], np.full_like(NARROW, 255)], axis=-1)
    np.testing.assert_array_equal(decode_image(_png16_rgb(rgb), "x"), want)


def test_a_16bit_scan_is_not_clipped_to_white():
    # the sweep's case: a mid-grey 16-bit PNG that Pillow's own conversion makes 99.5% white
    ramp = np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)
    got = decode_image(_save(ramp, "PNG"), "scan.png")
    assert (got == 255).mean() < 0.01 and abs(float(got.mean()) - 127.5) < 1
    np.testing.assert_array_equal(got, (ramp >> 8).astype(np.uint8))


def _folder(tmp_path, files: dict[str, bytes]):
    root = tmp_path / "set"
    for split in ("train", "test"):
        for name, data in files.items():
            path = root / split / "a" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return root


def test_16bit_folder_gives_the_same_pixels_resident_streamed_and_to_predict(tmp_path):
    root = _folder(tmp_path, {"0.png": SIXTEEN_BIT["png"](), "1.tif": SIXTEEN_BIT["tiff big-endian"]()})
    ds = load_dataset(root, cache=False)
    assert ds.image_shape == (1, 2, 8)
    for image in ds.train.images:
        np.testing.assert_array_equal(image[0], NARROW)
    index = index_source(root)
    for i in range(len(index.train)):
        img, _ = FileExamples(index.train).load(i, None)
        assert img.mode == "L"
        np.testing.assert_array_equal(np.asarray(img), NARROW)
    # predict reads a file with read_image_file and decodes it with the run's channel count
    np.testing.assert_array_equal(np.asarray(decode(read_image_file(root / "test/a/0.png"), "p", 1)), NARROW)


@pytest.mark.parametrize(
    ("array", "text"),
    [
        (np.linspace(0, 1, 16, dtype=np.float32).reshape(2, 8), "floating-point image (mode F)"),
        (WIDE.astype(np.int32) * 1000, "32-bit integer image (mode I)"),
    ],
)
def test_float_and_int32_tiffs_are_refused_naming_the_file_and_mode(tmp_path, array, text):
    data = _save(array, "TIFF")
    pattern = rf"x\.tif: {re.escape(text)}; its range of values is not in the file"
    for fn in (lambda: decode_image(data, "x.tif"), lambda: decode(data, "x.tif", 3)):
        with pytest.raises(DataError, match=pattern):
            fn()
    root = _folder(tmp_path, {"0.tif": data})
    with pytest.raises(DataError, match=rf"train/a/0\.tif: {text.split(' (')[0]}"):
        load_dataset(root, cache=False)
    with pytest.raises(DataError, match=rf"train/a/0\.tif: {text.split(' (')[0]}"):
        FileExamples(index_source(root).train).load(0, None)


def test_pil_images_of_a_user_dataset_stream_by_the_same_rule():
    class Items:
        def __init__(self, images):
            self.images = images

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return self.images[i], 0

    grey16 = Image.fromarray(WIDE)
    examples = TorchExamples(Items([grey16, Image.fromarray(WIDE.astype(np.float32))]), "train")
    img, y = examples.load(0, 3)
    assert img.mode == "RGB" and y == 0
    np.testing.assert_array_equal(np.asarray(img)[..., 1], NARROW)
    with pytest.raises(DataError, match=r"train\[1\]: floating-point image \(mode F\)"):
        examples.load(1, None)
    np.testing.assert_array_equal(np.asarray(as_8bit(grey16, "x")), NARROW)
