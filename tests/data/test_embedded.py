import io
from pathlib import Path

import numpy as np
import pytest

import mheads.data
from mheads.data import EMBEDDED_NAME, DataError, Dataset, Split, load_dataset, load_embedded
from mheads.data.embedded import EMBEDDED_FILE, build_subset, save_subset
from mheads.data.labels import FASHION_MNIST_CLASSES

EMBEDDED_PATH = Path(mheads.data.__file__).parent / "embedded"


def test_embedded_subset_shape_balance_and_size():
    ds = load_dataset(None)
    assert ds.name == EMBEDDED_NAME and ds.classes == FASHION_MNIST_CLASSES
    assert ds.train.images.shape == (10_000, 1, 28, 28) and ds.test.images.shape == (2_000, 1, 28, 28)
    assert ds.train.images.dtype == np.uint8 and ds.train.labels.dtype == np.int64
    assert np.bincount(ds.train.labels).tolist() == [1000] * 10
    assert np.bincount(ds.test.labels).tolist() == [200] * 10
    assert ds.train.images.flags.writeable
    # Real photographs of clothes, not a blank or constant file.
    assert 50 < ds.train.images.mean() < 100 and ds.train.images.std() > 50
    size = (EMBEDDED_PATH / EMBEDDED_FILE).stat().st_size
    assert size < 6_000_000, f"embedded subset is {size / 1e6:.1f} MB; the package must stay light"
    notice = (EMBEDDED_PATH / "NOTICE").read_text()
    assert "Zalando SE" in notice and "Permission is hereby granted" in notice


def _toy(n_per_class, classes=3, seed=0):
    labels = np.repeat(np.arange(classes), n_per_class).astype(np.int64)
    rng = np.random.default_rng(seed)
    rng.shuffle(labels)
    images = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1).repeat(2, axis=2)
    return Split(images, labels)


def test_build_subset_is_balanced_deterministic_and_ordered():
    full = Dataset("toy", _toy(10), _toy(6, seed=1), ["a", "b", "c"])
    subset, train_index, test_index = build_subset(full, 4, 2, seed=5)
    assert np.bincount(subset.train.labels).tolist() == [4, 4, 4]
    assert np.bincount(subset.test.labels).tolist() == [2, 2, 2]
    assert (np.diff(train_index) > 0).all()  # original order kept
    np.testing.assert_array_equal(subset.train.images, full.train.images[train_index])
    _, train_again, _ = build_subset(full, 4, 2, seed=5)
    np.testing.assert_array_equal(train_again, train_index)
    _, other, _ = build_subset(full, 4, 2, seed=6)
    assert not np.array_equal(other, train_index)
    with pytest.raises(DataError, match="train split has 10 images of class 0; need 11"):
        build_subset(full, 11, 2)

    buffer = io.BytesIO()
    save_subset(buffer, subset, train_index, test_index, 5)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["train_images"], subset.train.images)
        assert z["train_labels"].dtype == np.uint8 and int(z["seed"]) == 5


def test_shipped_subset_matches_a_rebuild_from_the_full_files(shared_data):
    fashion = shared_data / "fashion-mnist"
    if not fashion.is_dir():
        pytest.skip(f"{fashion} not found")
    full = load_dataset(fashion, cache=False)
    subset, train_index, test_index = build_subset(full)
    shipped = load_embedded()
    np.testing.assert_array_equal(shipped.train.images, subset.train.images)
    np.testing.assert_array_equal(shipped.train.labels, subset.train.labels)
    np.testing.assert_array_equal(shipped.test.images, subset.test.images)
    np.testing.assert_array_equal(shipped.test.labels, subset.test.labels)
    with np.load(EMBEDDED_PATH / EMBEDDED_FILE) as z:
        np.testing.assert_array_equal(z["train_index"], train_index)
        np.testing.assert_array_equal(z["test_index"], test_index)
