import logging
import os
import stat

import numpy as np
import pytest
from data_writers import balanced_labels, random_images, write_idx_folder

import mheads.data.load as load_module
from mheads.data import load_dataset
from mheads.data.cache import cache_locations, fingerprint


def _write(folder, seed=0, n=20):
    train = (random_images(n, 1, 4, 4, seed)[:, 0], balanced_labels(n, 10))
    test = (random_images(10, 1, 4, 4, seed + 1)[:, 0], balanced_labels(10, 10))
    write_idx_folder(folder, train, test)
    return train, test


@pytest.fixture
def no_reading(monkeypatch):
    """Make any read of the source fail, so a successful load proves the cache served it."""

    def refuse(source):
        raise AssertionError(f"source {source.path} was read although a valid cache exists")

    monkeypatch.setattr(load_module, "detect_layout", refuse)


def test_cache_beside_source_and_reused(tmp_path, monkeypatch):
    _write(tmp_path / "d")
    first = load_dataset(tmp_path / "d")
    cache = tmp_path / "d.mheads.npz"
    assert cache.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(
        load_module, "detect_layout", lambda s: pytest.fail("read the source despite the cache")
    )
    again = load_dataset(tmp_path / "d")
    np.testing.assert_array_equal(again.train.images, first.train.images)
    np.testing.assert_array_equal(again.test.labels, first.test.labels)
    assert again.classes == first.classes and again.name == "d"
    assert again.train.images.flags.writeable and again.train.labels.dtype == np.int64


def test_cache_invalidated_by_content_and_mtime(tmp_path):
    _write(tmp_path / "d")
    load_dataset(tmp_path / "d")
    new_train, _ = _write(tmp_path / "d", seed=7, n=30)  # new content and size
    ds = load_dataset(tmp_path / "d")
    np.testing.assert_array_equal(ds.train.images[:, 0], new_train[0])

    before = fingerprint(tmp_path / "d")
    path = tmp_path / "d" / "train-images-idx3-ubyte"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fingerprint(tmp_path / "d") != before


def test_read_only_folder_uses_user_cache(tmp_path, _user_cache, monkeypatch):
    parent = tmp_path / "shared"
    _write(parent / "d")
    parent.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        first = load_dataset(parent / "d")
        assert sorted(p.name for p in parent.iterdir()) == ["d"]  # nothing written beside the source
        cached = list(_user_cache.glob("d-*.npz"))
        assert len(cached) == 1 and cache_locations(parent / "d") == cached
        monkeypatch.setattr(
            load_module, "detect_layout", lambda s: pytest.fail("read the source despite the cache")
        )
        np.testing.assert_array_equal(load_dataset(parent / "d").train.images, first.train.images)
    finally:
        parent.chmod(0o755)


def test_damaged_cache_is_ignored_and_rewritten(tmp_path, caplog):
    train, _ = _write(tmp_path / "d")
    load_dataset(tmp_path / "d")
    cache = tmp_path / "d.mheads.npz"
    cache.write_bytes(cache.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="mheads.data.cache"):
        ds = load_dataset(tmp_path / "d")
    assert "ignoring unreadable data cache" in caplog.text
    np.testing.assert_array_equal(ds.train.images[:, 0], train[0])
    with np.load(cache) as z:
        assert z["train_images"].shape == (20, 1, 4, 4)


class _Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_cache_holding_a_pickle_is_never_unpickled(tmp_path):
    _write(tmp_path / "d")
    ds = load_dataset(tmp_path / "d")
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = _Touch(marker)
    np.savez(
        tmp_path / "d.mheads.npz",
        train_images=payload,
        train_labels=ds.train.labels,
        test_images=ds.test.images,
        test_labels=ds.test.labels,
        classes=np.array(ds.classes),
        name=np.array("d"),
        fingerprint=np.array(fingerprint(tmp_path / "d")),
    )
    again = load_dataset(tmp_path / "d")
    assert not marker.exists()
    np.testing.assert_array_equal(again.train.images, ds.train.images)


def test_cache_false_writes_nothing(tmp_path, _user_cache):
    _write(tmp_path / "d")
    load_dataset(tmp_path / "d", cache=False)
    assert not (tmp_path / "d.mheads.npz").exists() and not _user_cache.exists()
