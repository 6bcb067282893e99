import gzip

import numpy as np
import pytest
from data_writers import idx_bytes, random_images, write_idx_folder

from mheads.data import DataError, load_dataset
from mheads.data.idx import parse_idx
from mheads.data.labels import FASHION_MNIST_CLASSES


def _splits(seed=0, n_train=20, n_test=10, classes=10):
    train = (random_images(n_train, 1, 5, 4, seed)[:, 0], np.arange(n_train) % classes)
    test = (random_images(n_test, 1, 5, 4, seed + 1)[:, 0], (np.arange(n_test) * 3) % classes)
    return train, test


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dotted", [False, True])
def test_idx_round_trip(tmp_path, gz, dotted):
    train, test = _splits()
    write_idx_folder(tmp_path / "mnist", train, test, gz=gz, dotted=dotted)
    ds = load_dataset(tmp_path / "mnist", cache=False)
    assert ds.name == "mnist" and ds.image_shape == (1, 5, 4)
    np.testing.assert_array_equal(ds.train.images[:, 0], train[0])
    np.testing.assert_array_equal(ds.train.labels, train[1])
    np.testing.assert_array_equal(ds.test.images[:, 0], test[0])
    np.testing.assert_array_equal(ds.test.labels, test[1])
    assert ds.train.images.dtype == np.uint8 and ds.train.labels.dtype == np.int64
    assert ds.train.images.flags.writeable  # torch.from_numpy warns on read-only arrays
    assert ds.classes == [str(i) for i in range(10)]


def test_fashion_names_and_classes_file(tmp_path):
    train, test = _splits()
    write_idx_folder(tmp_path / "fashion-mnist", train, test, gz=True)
    assert load_dataset(tmp_path / "fashion-mnist", cache=False).classes == FASHION_MNIST_CLASSES
    write_idx_folder(tmp_path / "other", train, test)
    names = [f"c{i}" for i in range(12)]
    (tmp_path / "other" / "classes.txt").write_text("\n".join(names))
    assert load_dataset(tmp_path / "other", cache=False).classes == names


def test_labels_outside_classes_file(tmp_path):
    train, test = _splits()
    write_idx_folder(tmp_path / "d", train, test)
    (tmp_path / "d" / "classes.txt").write_text("a\nb\nc\n")
    with pytest.raises(
        DataError, match=r"train-labels-idx1-ubyte: label 9 is outside the class range 0\.\.2"
    ):
        load_dataset(tmp_path / "d", cache=False)


def test_truncated_raw_and_gz(tmp_path):
    train, test = _splits()
    write_idx_folder(tmp_path / "raw", train, test)
    path = tmp_path / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: idx file truncated: .* expected 4\d\d"):
        load_dataset(tmp_path / "raw", cache=False)

    write_idx_folder(tmp_path / "gz", train, test, gz=True)
    path = tmp_path / "gz" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: corrupt or truncated gzip data"):
        load_dataset(tmp_path / "gz", cache=False)


def test_label_count_mismatch(tmp_path):
    train, test = _splits()
    write_idx_folder(tmp_path / "d", train, (test[0], test[1][:-1]))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: 9 labels for 10 images"):
        load_dataset(tmp_path / "d", cache=False)


def test_parse_idx_rejects_bad_headers():
    with pytest.raises(DataError, match="bad magic"):
        parse_idx(b"\x01\x00\x08\x01\x00\x00\x00\x00", "f", gzipped=False)
    with pytest.raises(DataError, match="type 0x0d is not supported"):
        parse_idx(b"\x00\x00\x0d\x01\x00\x00\x00\x00", "f", gzipped=False)
    with pytest.raises(DataError, match="trailing bytes"):
        parse_idx(idx_bytes(np.zeros(3, np.uint8)) + b"x", "f", gzipped=False)
    np.testing.assert_array_equal(
        parse_idx(gzip.compress(idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3))), "f", gzipped=True),
        np.arange(6).reshape(2, 3),
    )


def test_bad_idx_data_is_refused_naming_the_file(tmp_path):
    from mheads.data.idx import parse_idx

    # a header whose shape product overflows int64 (65535^5 > 2^63): refused as truncated, not wrapped around
    huge = bytes([0, 0, 8, 5]) + (65535).to_bytes(4, "big") * 5 + b"\0" * 16
    with pytest.raises(
        DataError, match=r"x.idx: idx file truncated: 40 bytes, expected 1208833588708967444709399 for shape"
    ):
        parse_idx(huge, "x.idx", False)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 200], dtype=np.uint8)  # one stray label far above the others
    write_idx_folder(tmp_path / "stray", (np.zeros((8, 4, 4)), labels), (np.zeros((3, 4, 4)), labels[:3]))
    with pytest.raises(
        DataError,
        match=r"labels run up to 200 but 197 of 0..200 never occur .* label 200 has 1 "
        r"example\(s\): a stray label\?",
    ):
        load_dataset(tmp_path / "stray", cache=False)
    write_idx_folder(tmp_path / "empty", (np.zeros((4, 4, 4)), labels[:4]), (np.zeros((0, 4, 4)), labels[:0]))
    with pytest.raises(DataError, match=r"the test split has no images; expected at least one"):
        load_dataset(tmp_path / "empty", cache=False)
