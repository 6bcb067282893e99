import json
import logging
import os
import shutil
import stat
import time
import warnings

import numpy as np
import pytest
import torch
from data_writers import balanced_labels, random_images, write_idx_folder

import mheads.data.cache as cache_module
import mheads.data.load as load_module
from mheads.data import load_dataset
from mheads.data.cache import CACHE_VERSION, cache_locations, fingerprint, load_cache, save_cache
from mheads.data.dataset import Dataset, Split

ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


def _write(folder, seed=0, n=20):
    train = (random_images(n, 1, 4, 4, seed)[:, 0], balanced_labels(n, 10))
    test = (random_images(10, 1, 4, 4, seed + 1)[:, 0], balanced_labels(10, 10))
    write_idx_folder(folder, train, test)
    return train, test


@pytest.fixture
def reads(monkeypatch):
    """Count the reads of the source (a load served by the cache reads it 0 times)."""
    calls = []
    real = load_module.detect_layout

    def counting(source):
        calls.append(source.path)
        return real(source)

    monkeypatch.setattr(load_module, "detect_layout", counting)
    return calls


def _scratch(folder):
    """Temporary or set-aside folders a writer left beside its caches."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".old")))


def _dataset(n_train=6, n_test=3, seed=0):
    return Dataset(
        name="toy",
        train=Split(random_images(n_train, 3, 4, 5, seed), balanced_labels(n_train, 3)),
        test=Split(random_images(n_test, 3, 4, 5, seed + 1), balanced_labels(n_test, 3)),
        classes=["a", "b", "c"],
    )


def _assert_same(got, want):
    for split in ("train", "test"):
        for kind in ("images", "labels"):
            a, b = getattr(getattr(got, split), kind), getattr(getattr(want, split), kind)
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
    assert got.name == want.name and got.classes == want.classes


def test_cache_beside_source_and_reused(tmp_path, reads):
    _write(tmp_path / "d")
    first = load_dataset(tmp_path / "d")
    cache = tmp_path / "d.mheads-cache"
    assert cache.is_dir()
    assert sorted(p.name for p in cache.iterdir()) == sorted([f"{k}.npy" for k in ARRAYS] + ["meta.json"])
    meta = json.loads((cache / "meta.json").read_text())
    assert meta["cache_version"] == CACHE_VERSION and meta["name"] == "d"
    assert meta["fingerprint"] == fingerprint(tmp_path / "d") and meta["classes"] == first.classes
    assert _scratch(tmp_path) == []
    assert len(reads) == 1

    again = load_dataset(tmp_path / "d")
    assert len(reads) == 1  # served by the cache
    _assert_same(again, first)
    assert again.name == "d"
    assert again.train.labels.dtype == np.int64


def test_loaded_images_are_copy_on_write_memmaps(tmp_path):
    _write(tmp_path / "d")
    first = load_dataset(tmp_path / "d")
    again = load_dataset(tmp_path / "d")
    for split in (again.train, again.test):
        assert isinstance(split.images, np.memmap) and split.images.mode == "c"
        assert not isinstance(split.labels, np.memmap)  # labels are read into memory
    images = again.train.images
    assert images.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on a read-only array; copy-on-write is writable
        tensor = torch.from_numpy(images)
        torch.as_tensor(again.test.images)
    tensor[0] = 0  # a private copy of the page: the cache file is unchanged
    assert not images[0].any()
    np.testing.assert_array_equal(load_dataset(tmp_path / "d").train.images, first.train.images)


def test_round_trip_direct(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "_WRITE_CHUNK_BYTES", 100)  # several chunks per array
    source = tmp_path / "src.tar"
    source.write_bytes(b"x")
    base = _dataset(n_train=9, n_test=0)
    # A non-contiguous view (as a reader's transpose would give) is written in C order, chunk by chunk.
    hwc = np.ascontiguousarray(base.train.images.transpose(0, 2, 3, 1))
    view = hwc.transpose(0, 3, 1, 2)
    assert not view.flags.c_contiguous
    dataset = Dataset(base.name, Split(view, base.train.labels), base.test, base.classes)
    where = save_cache(source, "stamp", dataset)
    assert where == tmp_path / "src.tar.mheads-cache"
    got = load_cache(source, "stamp")
    _assert_same(got, dataset)  # including an empty test split
    assert got.train.images.flags.c_contiguous
    assert load_cache(source, "other stamp") is None


def test_cache_invalidated_by_content_and_mtime(tmp_path):
    _write(tmp_path / "d")
    load_dataset(tmp_path / "d")
    new_train, _ = _write(tmp_path / "d", seed=7, n=30)  # new content and size
    ds = load_dataset(tmp_path / "d")
    np.testing.assert_array_equal(ds.train.images[:, 0], new_train[0])
    assert _scratch(tmp_path) == []  # the stale cache was replaced, nothing set aside is left

    before = fingerprint(tmp_path / "d")
    path = tmp_path / "d" / "train-images-idx3-ubyte"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fingerprint(tmp_path / "d") != before


def test_wrong_fingerprint_is_ignored_and_replaced(tmp_path, reads, caplog):
    _write(tmp_path / "d")
    load_dataset(tmp_path / "d")
    meta_file = tmp_path / "d.mheads-cache" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["fingerprint"] = "v2:dir:4:0000"
    meta_file.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="mheads.data.cache"):
        load_dataset(tmp_path / "d")
    assert len(reads) == 2 and "ignoring" not in caplog.text  # a stale cache is no damage
    assert json.loads(meta_file.read_text())["fingerprint"] == fingerprint(tmp_path / "d")
    load_dataset(tmp_path / "d")
    assert len(reads) == 2


def test_old_version_is_ignored(tmp_path, reads):
    _write(tmp_path / "d")
    load_dataset(tmp_path / "d")
    meta_file = tmp_path / "d.mheads-cache" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["cache_version"] = CACHE_VERSION - 1
    meta_file.write_text(json.dumps(meta))
    load_dataset(tmp_path / "d")
    assert len(reads) == 2


def _truncate(cache):
    file = cache / "train_images.npy"
    file.write_bytes(file.read_bytes()[:-7])


def _drop_meta(cache):
    (cache / "meta.json").unlink()


def _bad_json(cache):
    (cache / "meta.json").write_text('{"cache_version": 2, "fingerp')


def _wrong_shape(cache):
    np.save(cache / "train_images.npy", np.zeros((20, 1, 4, 3), dtype=np.uint8))


def _wrong_dtype(cache):
    np.save(cache / "train_labels.npy", np.zeros(20, dtype=np.int32))


def _drop_array(cache):
    (cache / "test_labels.npy").unlink()


@pytest.mark.parametrize(
    "damage", [_truncate, _drop_meta, _bad_json, _wrong_shape, _wrong_dtype, _drop_array]
)
def test_damaged_cache_is_ignored_and_rewritten(tmp_path, reads, caplog, damage):
    train, _ = _write(tmp_path / "d")
    load_dataset(tmp_path / "d")
    cache = tmp_path / "d.mheads-cache"
    damage(cache)
    with caplog.at_level(logging.WARNING, logger="mheads.data.cache"):
        ds = load_dataset(tmp_path / "d")
    assert "ignoring unreadable data cache" in caplog.text
    assert len(reads) == 2
    np.testing.assert_array_equal(ds.train.images[:, 0], train[0])
    assert np.load(cache / "train_images.npy", mmap_mode="r").shape == (20, 1, 4, 4)
    load_dataset(tmp_path / "d")
    assert len(reads) == 2  # the rewritten cache is valid again
    assert _scratch(tmp_path) == []


def test_leftover_temporary_folder_is_ignored(tmp_path, reads):
    _write(tmp_path / "d")
    first = load_dataset(tmp_path / "d")
    cache = tmp_path / "d.mheads-cache"
    # A writer that died before its rename: complete-looking content, but never at the cache's name.
    fresh = tmp_path / ".d.mheads-cache.0123abcd.tmp"
    old = tmp_path / ".d.mheads-cache.4567cdef.tmp"
    aside = tmp_path / ".d.mheads-cache.89abcdef.old"
    for leftover in (fresh, old, aside):
        shutil.copytree(cache, leftover)
    shutil.rmtree(cache)
    two_hours_ago = time.time() - 7200
    for leftover in (old, aside):
        for entry in [leftover, *leftover.iterdir()]:
            os.utime(entry, (two_hours_ago, two_hours_ago))

    again = load_dataset(tmp_path / "d")
    assert len(reads) == 2  # not loaded from the leftovers
    _assert_same(again, first)
    assert cache.is_dir()
    # The save removed the leftovers of dead writers (an hour untouched), not one that may still be writing.
    assert _scratch(tmp_path) == [fresh.name]
    load_dataset(tmp_path / "d")
    assert len(reads) == 2


def test_failed_write_keeps_the_old_cache(tmp_path, monkeypatch, caplog):
    source = tmp_path / "src.tar"
    source.write_bytes(b"x")
    old = _dataset(seed=0)
    assert save_cache(source, "old", old) is not None

    def fail(file, array):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module, "_write_npy", fail)
    with caplog.at_level(logging.WARNING, logger="mheads.data.cache"):
        assert save_cache(source, "new", _dataset(seed=5)) is None  # both locations failed
    assert "[Errno 28] No space left on device" in caplog.text
    _assert_same(load_cache(source, "old"), old)
    assert _scratch(tmp_path) == [] and load_cache(source, "new") is None


def test_failed_rename_keeps_the_old_cache(tmp_path, monkeypatch):
    source = tmp_path / "src.tar"
    source.write_bytes(b"x")
    old = _dataset(seed=0)
    save_cache(source, "old", old)
    real = os.rename

    def rename(src, dst):
        if str(src).endswith(".tmp"):
            raise OSError(13, "Permission denied")
        return real(src, dst)

    monkeypatch.setattr(cache_module.os, "rename", rename)
    monkeypatch.setattr(cache_module, "_user_cache_dir", lambda: tmp_path / "user")
    assert save_cache(source, "new", _dataset(seed=5)) is None
    monkeypatch.setattr(cache_module.os, "rename", real)
    _assert_same(load_cache(source, "old"), old)
    assert _scratch(tmp_path) == []


def test_crash_between_renames_leaves_no_cache(tmp_path, monkeypatch):
    source = tmp_path / "src.tar"
    source.write_bytes(b"x")
    save_cache(source, "old", _dataset(seed=0))
    real = os.rename

    def crash(src, dst):
        if str(src).endswith(".tmp"):
            raise KeyboardInterrupt  # the process dies after setting the old cache aside
        return real(src, dst)

    monkeypatch.setattr(cache_module.os, "rename", crash)
    with pytest.raises(KeyboardInterrupt):
        save_cache(source, "new", _dataset(seed=5))
    monkeypatch.setattr(cache_module.os, "rename", real)
    assert load_cache(source, "old") is None and load_cache(source, "new") is None
    new = _dataset(seed=5)
    assert save_cache(source, "new", new) is not None  # the leftovers do not block the next save
    _assert_same(load_cache(source, "new"), new)


def test_read_only_folder_uses_user_cache(tmp_path, _user_cache, reads):
    parent = tmp_path / "shared"
    _write(parent / "d")
    parent.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        first = load_dataset(parent / "d")
        assert sorted(p.name for p in parent.iterdir()) == ["d"]  # nothing written beside the source
        cached = list(_user_cache.glob("d-*.mheads-cache"))
        assert len(cached) == 1 and cache_locations(parent / "d") == cached
        assert _scratch(_user_cache) == []
        np.testing.assert_array_equal(load_dataset(parent / "d").train.images, first.train.images)
        assert len(reads) == 1
    finally:
        parent.chmod(0o755)


class _Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_cache_holding_a_pickle_is_never_unpickled(tmp_path):
    _write(tmp_path / "d")
    ds = load_dataset(tmp_path / "d")
    marker = tmp_path / "pwned"
    payload = np.empty(20, dtype=object)
    payload[0] = _Touch(marker)
    for key in ("train_images", "train_labels"):
        np.save(tmp_path / "d.mheads-cache" / f"{key}.npy", payload, allow_pickle=True)
    again = load_dataset(tmp_path / "d")
    assert not marker.exists()
    np.testing.assert_array_equal(again.train.images, ds.train.images)


def test_old_npz_cache_is_left_alone(tmp_path, reads):
    _write(tmp_path / "d")
    legacy = tmp_path / "d.mheads.npz"
    legacy.write_bytes(b"an old version-1 cache")
    load_dataset(tmp_path / "d")
    assert legacy.read_bytes() == b"an old version-1 cache" and len(reads) == 1


def test_cache_false_writes_nothing(tmp_path, _user_cache):
    _write(tmp_path / "d")
    load_dataset(tmp_path / "d", cache=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and not _user_cache.exists()
