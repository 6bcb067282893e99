"""The readers on the real data sets in MHEADS_DATA_DIR (skipped where they are absent)."""

import time

import numpy as np
import pytest

from mheads.data import load_dataset
from mheads.data.labels import FASHION_MNIST_CLASSES

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_full_fashion_mnist(shared_data):
    path = shared_data / "fashion-mnist"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    ds = load_dataset(path, cache=False)
    assert ds.classes == FASHION_MNIST_CLASSES and ds.image_shape == (1, 28, 28)
    assert len(ds.train) == 60_000 and len(ds.test) == 10_000
    assert np.bincount(ds.train.labels).tolist() == [6000] * 10
    assert np.bincount(ds.test.labels).tolist() == [1000] * 10


@pytest.mark.slow
def test_cifar10_jpeg_archive_and_cache(shared_data, _user_cache, capsys):
    path = shared_data / "cifar10-jpeg.tar.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    start = time.perf_counter()
    ds = load_dataset(path)
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = load_dataset(path)
    reload = time.perf_counter() - start
    with capsys.disabled():
        print(f"\ncifar10-jpeg.tar.gz: first read {first:.1f} s, cached reload {reload:.1f} s")
    assert ds.classes == CIFAR10  # the README's CIFAR-10 label order, which is also alphabetical
    assert ds.image_shape == (3, 32, 32) and len(ds.train) == 50_000 and len(ds.test) == 10_000
    assert np.bincount(ds.train.labels).tolist() == [5000] * 10
    assert np.bincount(ds.test.labels).tolist() == [1000] * 10
    np.testing.assert_array_equal(again.train.images, ds.train.images)
    assert reload < first / 2
