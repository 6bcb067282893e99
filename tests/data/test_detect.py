import tarfile

import numpy as np
import pytest
from data_writers import balanced_labels, make_tar, random_images, write_cifar10_python, write_idx_folder

from mheads.data import ACCEPTED_LAYOUTS, DataError, load_dataset


def _idx(folder, gz=True):
    train = (random_images(10, 1, 3, 3)[:, 0], balanced_labels(10, 10))
    test = (random_images(5, 1, 3, 3, 1)[:, 0], balanced_labels(5, 10))
    write_idx_folder(folder, train, test, gz=gz)
    return train, test


def test_missing_path(tmp_path):
    with pytest.raises(
        DataError, match=r"nope: no such file or folder; expected a data folder, a tar archive"
    ):
        load_dataset(tmp_path / "nope")


def test_empty_folder_and_empty_archive(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: the folder is empty; expected MNIST-style idx files"):
        load_dataset(tmp_path / "empty")
    with tarfile.open(tmp_path / "empty.tar.gz", "w:gz"):
        pass
    with pytest.raises(DataError, match=r"empty\.tar\.gz: the archive is empty"):
        load_dataset(tmp_path / "empty.tar.gz")


def test_unrecognised_layout_lists_accepted_layouts(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "data.csv").write_text("1,2,3")
    (tmp_path / "d" / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path / "d")
    message = str(info.value)
    assert "unrecognised data layout (found data.csv, notes.txt)" in message
    assert ACCEPTED_LAYOUTS in message and "\n" not in message
    for layout in (
        "MNIST-style idx",
        "CIFAR-10 python",
        "CIFAR-100 python",
        "CIFAR-10 binary",
        "CIFAR-100 binary",
        "image folder",
        "archive",
    ):
        assert layout in message


def test_partial_layouts_name_missing_files(tmp_path):
    _idx(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        DataError, match=r"looks like MNIST-style idx files .* but t10k-labels-idx1-ubyte\[\.gz\] is missing"
    ):
        load_dataset(tmp_path / "d")
    (tmp_path / "imgs" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "imgs" / "train" / "cat" / "0.png").write_bytes(b"")
    with pytest.raises(
        DataError, match=r"looks like an image folder .* but test/<class>/\*\.png\|jpg is missing"
    ):
        load_dataset(tmp_path / "imgs")


def test_plain_file_and_corrupt_archive(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY rubbish")
    with pytest.raises(
        DataError, match=r"x\.npy: a file that is not a tar archive; expected a folder or a \.tar"
    ):
        load_dataset(tmp_path / "x.npy")
    _idx(tmp_path / "d", gz=False)
    archive = make_tar(tmp_path / "d", tmp_path / "d.tar.gz")
    (tmp_path / "cut.tar.gz").write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut\.tar\.gz.*(truncated|corrupt)"):
        load_dataset(tmp_path / "cut.tar.gz")
    plain = make_tar(tmp_path / "d", tmp_path / "d.tar", "w")
    # Members are 1024 bytes (header + one data block): cut where data starts, at a header, inside a header.
    for cut in (1536, 2048, 2500):
        (tmp_path / "cut.tar").write_bytes(plain.read_bytes()[:cut])
        with pytest.raises(DataError, match=r"cut\.tar.*(truncated|corrupt)"):
            load_dataset(tmp_path / "cut.tar")
    (tmp_path / "junk.tgz").write_bytes(b"not gzip at all" * 100)
    with pytest.raises(DataError, match=r"junk\.tgz: not a readable tar archive or truncated"):
        load_dataset(tmp_path / "junk.tgz")


def test_archives_of_idx_and_cifar_with_top_folder(tmp_path):
    train, _ = _idx(tmp_path / "fashion")
    ds = load_dataset(make_tar(tmp_path / "fashion", tmp_path / "fashion.tar.gz", arcname="a/b"))
    assert ds.name == "fashion" and ds.classes[0] == "T-shirt/top"
    np.testing.assert_array_equal(ds.train.images[:, 0], train[0])

    images, labels = random_images(4, 3, 32, 32), balanced_labels(4, 2)
    write_cifar10_python(tmp_path / "c", (images, labels), (images, labels), ["a", "b"], batches=1)
    ds = load_dataset(
        make_tar(tmp_path / "c", tmp_path / "cifar-10-python.tar.gz", arcname="cifar-10-batches-py")
    )
    assert ds.name == "cifar-10-python" and ds.classes == ["a", "b"]
    np.testing.assert_array_equal(ds.test.images, images)


def test_embedded_by_name_and_bad_type():
    assert load_dataset("fashion-mnist-subset").name == "fashion-mnist-subset"
    with pytest.raises(TypeError, match="source must be a path"):
        load_dataset(3)  # type: ignore[arg-type]
