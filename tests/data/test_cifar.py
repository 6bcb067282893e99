import builtins
import os
import pickle

import numpy as np
import pytest
from data_writers import (
    balanced_labels,
    cifar_python_batch,
    py2_cifar_batch,
    random_images,
    write_cifar10_binary,
    write_cifar10_python,
    write_cifar100_binary,
    write_cifar100_python,
)

from mheads.data import DataError, load_dataset
from mheads.data.safe_pickle import safe_unpickle

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100 = [f"fine{i}" for i in range(10)]  # 10 fine classes keep the files tiny; the reader takes any count


def _data(seed=0):
    train = (random_images(20, 3, 32, 32, seed), balanced_labels(20, 10)[::-1].copy())
    test = (random_images(10, 3, 32, 32, seed + 1), balanced_labels(10, 10))
    return train, test


def _check(ds, train, test, classes):
    np.testing.assert_array_equal(ds.train.images, train[0])
    np.testing.assert_array_equal(ds.train.labels, train[1])
    np.testing.assert_array_equal(ds.test.images, test[0])
    np.testing.assert_array_equal(ds.test.labels, test[1])
    assert ds.classes == classes and ds.image_shape == (3, 32, 32)
    assert ds.train.images.flags.writeable


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar10_python(tmp_path, protocol, bytes_keys):
    train, test = _data()
    write_cifar10_python(
        tmp_path / "cifar-10-batches-py", train, test, CIFAR10, protocol, bytes_keys=bytes_keys
    )
    _check(load_dataset(tmp_path / "cifar-10-batches-py", cache=False), train, test, CIFAR10)


def test_python2_era_pickles_as_in_the_original_files(tmp_path):
    train, test = _data(2)
    write_cifar10_python(tmp_path / "p", train, test, CIFAR10, batches=1)
    (tmp_path / "p" / "data_batch_1").write_bytes(py2_cifar_batch(*train))
    (tmp_path / "p" / "test_batch").write_bytes(py2_cifar_batch(*test))
    _check(load_dataset(tmp_path / "p", cache=False), train, test, CIFAR10)


def test_cifar100_python(tmp_path):
    train, test = _data(3)
    write_cifar100_python(tmp_path / "cifar-100-python", train, test, CIFAR100)
    _check(load_dataset(tmp_path / "cifar-100-python", cache=False), train, test, CIFAR100)


def test_cifar10_binary_and_100_binary(tmp_path):
    train, test = _data(5)
    write_cifar10_binary(tmp_path / "b10", train, test, CIFAR10, batches=3)
    _check(load_dataset(tmp_path / "b10", cache=False), train, test, CIFAR10)
    write_cifar100_binary(tmp_path / "b100", train, test, CIFAR100)
    _check(load_dataset(tmp_path / "b100", cache=False), train, test, CIFAR100)


def test_binary_truncated_names_file(tmp_path):
    train, test = _data()
    write_cifar10_binary(tmp_path / "b", train, test, CIFAR10)
    path = tmp_path / "b" / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(
        DataError, match=r"data_batch_2\.bin: \d+ bytes is not a whole number of 3073-byte records"
    ):
        load_dataset(tmp_path / "b", cache=False)


def test_binary_label_out_of_range(tmp_path):
    train, test = _data()
    write_cifar10_binary(tmp_path / "b", train, test, CIFAR10)
    (tmp_path / "b" / "batches.meta.txt").write_text("a\nb\nc\n")
    with pytest.raises(DataError, match=r"data_batch_1\.bin: label \d is outside the class range 0\.\.2"):
        load_dataset(tmp_path / "b", cache=False)


def test_python_label_out_of_range(tmp_path):
    train, test = _data()
    write_cifar10_python(tmp_path / "p", train, test, CIFAR10)
    bad = test[1].copy()
    bad[3] = 10
    (tmp_path / "p" / "test_batch").write_bytes(cifar_python_batch(test[0], bad, "labels"))
    with pytest.raises(DataError, match=r"test_batch: label 10 is outside the class range 0\.\.9"):
        load_dataset(tmp_path / "p", cache=False)


def test_truncated_pickle(tmp_path):
    train, test = _data()
    write_cifar10_python(tmp_path / "p", train, test, CIFAR10)
    path = tmp_path / "p" / "data_batch_1"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"data_batch_1: corrupt or truncated pickle"):
        load_dataset(tmp_path / "p", cache=False)


class _SystemCall:
    """Unpickling this runs a shell command (the classic pickle exploit)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _ExecCall:
    """Unpickling this runs Python code through builtins.exec."""

    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))


def _payloads(marker):
    yield _SystemCall(f"touch {marker}")
    yield _ExecCall(f"open({str(marker)!r}, 'w').close()")
    # Hidden inside an otherwise valid batch, as the data entry.
    yield {"labels": [0], "data": _SystemCall(f"touch {marker}")}


@pytest.mark.parametrize("which", range(3))
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_crafted_pickle_is_refused_and_never_runs(tmp_path, which, protocol):
    marker = tmp_path / "pwned"
    train, test = _data()
    write_cifar10_python(tmp_path / "p", train, test, CIFAR10)
    payload = list(_payloads(marker))[which]
    (tmp_path / "p" / "data_batch_1").write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(
        DataError, match=r"data_batch_1: refused to load ((posix|os|nt)\.system|(__builtin__|builtins)\.exec)"
    ):
        load_dataset(tmp_path / "p", cache=False)
    assert not marker.exists()
    # Sanity check of the test itself: the plain unpickler would have created the file.
    pickle.loads(pickle.dumps(_SystemCall(f"touch {marker}"), protocol=protocol))
    assert marker.exists()


def test_unpickler_refuses_object_arrays_and_other_codecs():
    with pytest.raises(DataError, match="refused object dtype"):
        safe_unpickle(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2), "f")
    with pytest.raises(DataError, match="refused to load numpy.load"):
        safe_unpickle(pickle.dumps(np.load, protocol=2), "f")
    assert safe_unpickle(pickle.dumps({"a": [1, 2.5, "x", b"y"]}, protocol=2), "f") == {
        "a": [1, 2.5, "x", b"y"]
    }


def test_python_batches_of_different_image_sizes_are_refused_naming_both(tmp_path):
    classes = [f"c{i}" for i in range(10)]
    write_cifar10_python(
        tmp_path / "c",
        (random_images(8, 3, 32, 32), balanced_labels(8, 10)),
        (random_images(4, 3, 32, 32), balanced_labels(4, 10)),
        classes,
    )
    (tmp_path / "c" / "data_batch_2").write_bytes(
        cifar_python_batch(random_images(4, 3, 16, 16), balanced_labels(4, 10), "labels")
    )
    with pytest.raises(
        DataError,
        match=r"data_batch_2: images are 16x16 but .*data_batch_1's are 32x32; all "
        r"batches must share one size",
    ):
        load_dataset(tmp_path / "c", cache=False)
