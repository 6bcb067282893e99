"""read_mask_folder: images/<name> with masks/<name>.png class-index masks (modes L and P), any size."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from mheads.data import DataError
from mheads.data.masks import read_mask_folder


def save(path, array, mode=None, palette=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(array, dtype=np.uint8), mode)
    if palette:
        img = img.convert("P") if img.mode != "P" else img
        img.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    img.save(path)


def folder(root, sizes=((32, 48), (20, 33)), rgb=(True, False)):
    for i, ((h, w), colour) in enumerate(zip(sizes, rgb)):
        picture = np.full((h, w, 3) if colour else (h, w), 10 * i, dtype=np.uint8)
        save(root / "images" / f"im{i}.png", picture)
        mask = np.arange(h * w).reshape(h, w) % 3
        mask[0, 0] = 255
        save(root / "masks" / f"im{i}.png", mask)
    return root


def test_images_of_any_size_with_their_masks(tmp_path):
    pairs = read_mask_folder(folder(tmp_path), num_classes=3)
    (x0, y0), (x1, _) = pairs[0], pairs[1]
    assert x0.shape == (3, 32, 48) and y0.shape == (32, 48) and y0.dtype == torch.int64
    assert x1.shape == (3, 20, 33) and torch.equal(x1[0], x1[2])  # greyscale repeated in an RGB set
    assert int(y0[0, 0]) == 255 and y0[0, 1:4].tolist() == [1, 2, 0]


def test_greyscale_set_and_palette_masks(tmp_path):
    save(tmp_path / "images" / "a" / "x.jpg", np.zeros((6, 9)))
    mask = np.array([[0, 1, 2] * 3] * 6)
    img = Image.fromarray(mask.astype(np.uint8), "L").convert("P")  # palette indices = the grey values
    (tmp_path / "masks" / "a").mkdir(parents=True)
    img.save(tmp_path / "masks" / "a" / "x.png")
    x, y = read_mask_folder(tmp_path)[0]
    assert x.shape == (1, 6, 9) and torch.equal(y, torch.from_numpy(mask))


def test_hostile_folders(tmp_path):
    root = folder(tmp_path / "lone")
    (root / "masks" / "im1.png").unlink()
    with pytest.raises(DataError, match=r"images/im1.png: no partner in masks/ \(expected masks/im1.\*\)"):
        read_mask_folder(root)
    root = folder(tmp_path / "extra")
    save(root / "masks" / "im9.png", np.zeros((2, 2)))
    with pytest.raises(DataError, match="masks/im9.png: no partner in images/"):
        read_mask_folder(root)
    root = folder(tmp_path / "twice")
    save(root / "images" / "im0.jpg", np.zeros((2, 2)))
    with pytest.raises(DataError, match="a second file named 'im0'"):
        read_mask_folder(root)
    root = folder(tmp_path / "value")
    save(root / "masks" / "im0.png", np.full((32, 48), 7))
    with pytest.raises(
        DataError,
        match=r"im0.png: pixel \(row 0, column 0\) has class 7; expected 0..2 or "
        "ignore_index 255",
    ):
        read_mask_folder(root, num_classes=3)
    root = folder(tmp_path / "size")
    save(root / "masks" / "im0.png", np.zeros((48, 32)))
    with pytest.raises(DataError, match="masks/im0.png: 32x48 pixels; expected its image's size, 48x32"):
        read_mask_folder(root)
    root = folder(tmp_path / "rgbmask")
    save(root / "masks" / "im0.png", np.zeros((32, 48, 3)))
    with pytest.raises(DataError, match="PNG image of mode RGB; expected a PNG of class indices, mode L "):
        read_mask_folder(root)
    root = folder(tmp_path / "jpgmask")
    save(root / "masks" / "im2.jpg", np.zeros((4, 4)))
    with pytest.raises(DataError, match="masks/im2.jpg: not a png file"):
        read_mask_folder(root)
    root = folder(tmp_path / "sixteen")
    Image.fromarray(np.zeros((32, 48), dtype=np.uint16)).save(root / "masks" / "im0.png")
    with pytest.raises(DataError, match="mode I;16"):
        read_mask_folder(root)
    root = folder(tmp_path / "cut")
    data = (root / "masks" / "im0.png").read_bytes()
    (root / "masks" / "im0.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="im0.png: corrupt or truncated mask"):
        read_mask_folder(root)
    root = folder(tmp_path / "fifo")
    os.mkfifo(root / "images" / "im5.png")
    with pytest.raises(DataError, match="FIFO"):
        read_mask_folder(root)
    with pytest.raises(DataError, match="no such folder; expected masks/"):
        (tmp_path / "nomasks" / "images").mkdir(parents=True)
        read_mask_folder(tmp_path / "nomasks")
    with pytest.raises(ValueError, match="ignore_index: got 1; expected a value outside the classes 0..2"):
        read_mask_folder(tmp_path, num_classes=3, ignore_index=1)


def test_the_decoded_set_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr("mheads.data.masks.read_limit", lambda: 5000)
    with pytest.raises(DataError, match="decodes to at least"):
        read_mask_folder(folder(tmp_path))
