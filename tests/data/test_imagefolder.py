import numpy as np
import pytest
from data_writers import balanced_labels, image_bytes, make_tar, random_images, write_image_folder

from mheads.data import DataError, load_dataset

CLASSES = ["cat", "dog", "emu"]


def _data(channels=3, seed=0):
    train = (random_images(9, channels, 6, 5, seed), balanced_labels(9, 3))
    test = (random_images(6, channels, 6, 5, seed + 1), balanced_labels(6, 3))
    return train, test


def _sorted_by_class(split):
    order = np.argsort(split[1], kind="stable")
    return split[0][order], split[1][order]


@pytest.mark.parametrize("channels", [1, 3])
def test_png_folder_round_trip(tmp_path, channels):
    train, test = _data(channels)
    write_image_folder(tmp_path / "imgs", {"train": train, "test": test}, CLASSES)
    ds = load_dataset(tmp_path / "imgs", cache=False)
    assert ds.classes == CLASSES and ds.image_shape == (channels, 6, 5)
    for got, want in ((ds.train, train), (ds.test, test)):
        images, labels = _sorted_by_class(want)
        np.testing.assert_array_equal(got.images, images)  # PNG is lossless
        np.testing.assert_array_equal(got.labels, labels)


@pytest.mark.parametrize("mode", ["w:gz", "w"])
def test_archive_equals_folder_and_nested_root(tmp_path, mode):
    train, test = _data()
    write_image_folder(tmp_path / "imgs", {"train": train, "test": test}, CLASSES, fmt="JPEG")
    from_folder = load_dataset(tmp_path / "imgs", cache=False)
    # The archive holds everything under one top folder, as downloaded archives usually do.
    archive = make_tar(
        tmp_path / "imgs", tmp_path / ("imgs.tar.gz" if mode == "w:gz" else "imgs.tar"), mode, "top"
    )
    from_archive = load_dataset(archive, cache=False)
    assert from_archive.name == "imgs" and from_archive.classes == CLASSES
    np.testing.assert_array_equal(from_archive.train.images, from_folder.train.images)
    np.testing.assert_array_equal(from_archive.test.labels, from_folder.test.labels)


def test_natural_order_and_classes_file(tmp_path):
    root = tmp_path / "imgs"
    pixels = random_images(12, 1, 4, 4)
    for i in range(12):  # 0..11: natural order puts 2.png before 10.png
        for split in ("train", "test"):
            path = root / split / ("b" if i % 2 else "a") / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image_bytes(pixels[i], "PNG"))
    ds = load_dataset(root, cache=False)
    np.testing.assert_array_equal(ds.train.images, pixels[[0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11]])
    (root / "classes.txt").write_text("b\na\nz\n")
    ds = load_dataset(root, cache=False)
    assert ds.classes == ["b", "a", "z"]
    np.testing.assert_array_equal(ds.train.labels, [0] * 6 + [1] * 6)
    np.testing.assert_array_equal(ds.train.images, pixels[[1, 3, 5, 7, 9, 11, 0, 2, 4, 6, 8, 10]])
    (root / "classes.txt").write_text("a\nz\n")
    with pytest.raises(DataError, match=r"train/b: class folder is not listed in .*classes\.txt"):
        load_dataset(root, cache=False)


def test_mixed_grey_and_colour_becomes_rgb(tmp_path):
    train, test = _data(3)
    write_image_folder(tmp_path / "imgs", {"train": train, "test": test}, CLASSES)
    grey = random_images(1, 1, 6, 5, 9)
    (tmp_path / "imgs" / "train" / "cat" / "0.png").write_bytes(image_bytes(grey[0], "PNG"))
    ds = load_dataset(tmp_path / "imgs", cache=False)
    assert ds.image_shape == (3, 6, 5)
    np.testing.assert_array_equal(ds.train.images[0], np.repeat(grey[0], 3, axis=0))


def test_truncated_jpeg_named_in_folder_and_archive(tmp_path):
    train, test = _data()
    write_image_folder(tmp_path / "imgs", {"train": train, "test": test}, CLASSES, fmt="JPEG")
    bad = tmp_path / "imgs" / "test" / "dog" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    # one line: the file, what is wrong, what to do (as a streamed image that fails to decode says)
    with pytest.raises(
        DataError, match=r"imgs/test/dog/1\.jpg: corrupt or truncated image .*; remove or replace it$"
    ):
        load_dataset(tmp_path / "imgs", cache=False)
    archive = make_tar(tmp_path / "imgs", tmp_path / "imgs.tgz")
    with pytest.raises(
        DataError, match=r"imgs\.tgz:test/dog/1\.jpg: corrupt or truncated image .*; remove or"
    ):
        load_dataset(archive, cache=False)


def test_not_an_image(tmp_path):
    train, test = _data()
    write_image_folder(tmp_path / "imgs", {"train": train, "test": test}, CLASSES)
    (tmp_path / "imgs" / "train" / "emu" / "x.png").write_bytes(b"this is text")
    with pytest.raises(
        DataError, match=r"train/emu/x\.png: corrupt or truncated image \(UnidentifiedImageError"
    ):
        load_dataset(tmp_path / "imgs", cache=False)


def test_inconsistent_sizes(tmp_path):
    train, test = _data()
    write_image_folder(tmp_path / "imgs", {"train": train, "test": test}, CLASSES)
    (tmp_path / "imgs" / "train" / "dog" / "2.png").write_bytes(
        image_bytes(random_images(1, 3, 7, 5)[0], "PNG")
    )
    with pytest.raises(
        DataError, match=r"train/dog/2\.png: image is 5x7 \(WxH\) but .* is 5x6; all images must"
    ):
        load_dataset(tmp_path / "imgs", cache=False)


def test_test_class_without_train_folder(tmp_path):
    train, test = _data()
    write_image_folder(tmp_path / "imgs", {"train": train, "test": test}, CLASSES)
    (tmp_path / "imgs" / "test" / "dgo").mkdir()
    (tmp_path / "imgs" / "test" / "dgo" / "0.png").write_bytes(image_bytes(test[0][0], "PNG"))
    with pytest.raises(DataError, match=r"test/dgo: class folder has no matching train/dgo folder"):
        load_dataset(tmp_path / "imgs", cache=False)


def test_val_split_and_ignored_files(tmp_path):
    train, test = _data()
    write_image_folder(tmp_path / "imgs", {"train": train, "val": test}, CLASSES)
    (tmp_path / "imgs" / "train" / "cat" / ".DS_Store").write_bytes(b"\0junk")
    (tmp_path / "imgs" / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = load_dataset(tmp_path / "imgs", cache=False)
    assert len(ds.train) == 9 and len(ds.test) == 6


def test_an_image_header_declaring_too_many_pixels_is_refused_before_decoding(tmp_path):
    import struct
    import zlib

    from mheads.data.imagefolder import MAX_PIXELS, decode_image
    from mheads.data.transforms import decode

    def png(w, h):  # a real 4x4 PNG whose header is rewritten to declare w x h (with a valid checksum)
        data = bytearray(image_bytes(np.zeros((1, 4, 4), np.uint8), "PNG"))
        chunk = b"IHDR" + struct.pack(">II", w, h) + bytes(data[24:29])
        data[12:29] = chunk
        data[29:33] = struct.pack(">I", zlib.crc32(chunk))
        return bytes(data)

    bomb = png(12000, 12000)
    assert 12000 * 12000 > MAX_PIXELS
    for fn in (lambda: decode_image(bomb, "x/bomb.png"), lambda: decode(bomb, "x/bomb.png")):
        with pytest.raises(DataError, match=r"x/bomb.png: image header declares 12000x12000 pixels; refused"):
            fn()
    root = tmp_path / "d"
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        (root / split / "a" / "0.png").write_bytes(image_bytes(np.zeros((1, 4, 4), np.uint8), "PNG"))
    (root / "train" / "a" / "1.png").write_bytes(bomb)  # not the first image: every image is checked
    with pytest.raises(DataError, match="1.png: image header declares 12000x12000"):
        load_dataset(root, cache=False)


def test_a_folder_that_would_not_fit_in_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    import mheads.data.imagefolder as imagefolder

    write_image_folder(
        tmp_path / "d",
        {
            "train": (random_images(4, 3, 8, 8), balanced_labels(4, 2)),
            "test": (random_images(2, 3, 8, 8), balanced_labels(2, 2)),
        },
        ["a", "b"],
    )
    monkeypatch.setattr(imagefolder, "available_memory", lambda: 500)  # 4 images x 3 x 8 x 8 = 768 bytes
    with pytest.raises(
        DataError,
        match=r"4 images of 8x8 decode to 0.0 MiB, more than the 0.0 MiB of memory "
        r"available; stream them instead \(data.loader: stream\)",
    ):
        load_dataset(tmp_path / "d", cache=False)


@pytest.mark.parametrize("split", ["train", "test"])
def test_one_split_is_read_alone_the_others_images_never_opened(tmp_path, split):
    from mheads.data.imagefolder import read_split
    from mheads.data.sources import open_source

    train, test = _data()
    write_image_folder(tmp_path / "imgs", {"train": train, "test": test}, CLASSES)
    other = "test" if split == "train" else "train"
    (tmp_path / "imgs" / other / "emu" / "0.png").write_bytes(b"this is text")  # never decoded
    with open_source(tmp_path / "imgs") as source:
        got, classes = read_split(source, "", split)
    images, labels = _sorted_by_class(train if split == "train" else test)
    assert classes == CLASSES
    np.testing.assert_array_equal(got.images, images)
    np.testing.assert_array_equal(got.labels, labels)
