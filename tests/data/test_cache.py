import json
import logging
import os
import shutil
import stat
import tarfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from data_writers import balanced_labels, make_tar, random_images, write_idx_folder

import mheads.data.cache as cache_module
import mheads.data.load as load_module
from mheads.data import load_dataset
from mheads.data.cache import (
    CACHE_VERSION,
    cache_locations,
    cached_dataset,
    fingerprint,
    load_cache,
    save_cache,
)
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


def _cache(path, cache_dir=None):
    """The one place where the cache of `path` lives."""
    locations = cache_locations(path) if cache_dir is None else cache_locations(path, cache_dir)
    assert len(locations) == 1
    return locations[0]


def _listing(folder):
    """Every entry below `folder` (hidden ones included), relative to it."""
    found = []
    for root, dirs, files in os.walk(folder):
        found += [os.path.relpath(os.path.join(root, n), folder) for n in dirs + files]
    return sorted(found)


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


def test_cache_in_cache_folder_and_reused(tmp_path, _user_cache, reads):
    _write(tmp_path / "d")
    first = load_dataset(tmp_path / "d")
    cache = _cache(tmp_path / "d")
    assert cache.parent == _user_cache
    assert cache.name.startswith("d-") and cache.name.endswith(".mheads-cache")
    assert cache.is_dir() and sorted(_user_cache.iterdir()) == [cache]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "user-cache"]  # nothing beside the source
    assert sorted(p.name for p in cache.iterdir()) == sorted([f"{k}.npy" for k in ARRAYS] + ["meta.json"])
    meta = json.loads((cache / "meta.json").read_text())
    assert meta["cache_version"] == CACHE_VERSION and meta["name"] == "d"
    assert meta["fingerprint"] == fingerprint(tmp_path / "d") and meta["classes"] == first.classes
    assert _scratch(_user_cache) == []
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
    base = _dataset(n_train=9, n_test=1)
    # A non-contiguous view (as a reader's transpose would give) is written in C order, chunk by chunk.
    hwc = np.ascontiguousarray(base.train.images.transpose(0, 2, 3, 1))
    view = hwc.transpose(0, 3, 1, 2)
    assert not view.flags.c_contiguous
    dataset = Dataset(base.name, Split(view, base.train.labels), base.test, base.classes)
    where = save_cache(source, "stamp", dataset)
    assert where == _cache(source) and where.parent == tmp_path / "user-cache"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.tar", "user-cache"]
    got = load_cache(source, "stamp")
    _assert_same(got, dataset)
    assert got.train.images.flags.c_contiguous
    assert load_cache(source, "other stamp") is None


def test_cache_invalidated_by_content_not_mtime(tmp_path, reads):
    _write(tmp_path / "d")
    load_dataset(tmp_path / "d")
    new_train, _ = _write(tmp_path / "d", seed=7, n=30)  # new content and size
    ds = load_dataset(tmp_path / "d")
    assert len(reads) == 2
    np.testing.assert_array_equal(ds.train.images[:, 0], new_train[0])
    assert _scratch(_cache(tmp_path / "d").parent) == []  # the stale cache was replaced, nothing set aside

    before = fingerprint(tmp_path / "d")
    path = tmp_path / "d" / "train-images-idx3-ubyte"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fingerprint(tmp_path / "d") == before  # a new mtime alone changes no byte
    np.testing.assert_array_equal(load_dataset(tmp_path / "d").train.images[:, 0], new_train[0])
    assert len(reads) == 2  # still served by the cache

    path.rename(tmp_path / "d" / "train-images.idx3-ubyte")
    assert fingerprint(tmp_path / "d") != before  # same bytes under another name


def test_fingerprint_hashes_every_byte(tmp_path):
    source = tmp_path / "src.tar"
    source.write_bytes(bytes(1000))
    st = source.stat()
    before = fingerprint(source)
    assert before.startswith(f"v{CACHE_VERSION}:file:")
    for at in (0, 500, 999):
        data = bytearray(1000)
        data[at] = 1
        source.write_bytes(data)
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert source.stat().st_size == st.st_size and source.stat().st_mtime_ns == st.st_mtime_ns
        assert fingerprint(source) != before, at
    source.write_bytes(bytes(1000))
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fingerprint(source) == before  # the same bytes, whatever the mtime

    folder = tmp_path / "d"
    _write(folder)
    before = fingerprint(folder)
    assert before.startswith(f"v{CACHE_VERSION}:dir:4:")
    labels = folder / "t10k-labels-idx1-ubyte"
    st = labels.stat()
    data = bytearray(labels.read_bytes())
    data[-1] ^= 1
    labels.write_bytes(data)
    os.utime(labels, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint(folder) != before


def test_wrong_fingerprint_is_ignored_and_replaced(tmp_path, reads, caplog):
    _write(tmp_path / "d")
    load_dataset(tmp_path / "d")
    meta_file = _cache(tmp_path / "d") / "meta.json"
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
    meta_file = _cache(tmp_path / "d") / "meta.json"
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


def _huge_meta(cache):
    # Still valid JSON (trailing spaces), but over the 64 MiB a meta.json may take: never read whole.
    with open(cache / "meta.json", "a") as f:
        f.write(" " * ((64 << 20) + 1))


@pytest.mark.parametrize(
    "damage", [_truncate, _drop_meta, _bad_json, _wrong_shape, _wrong_dtype, _drop_array, _huge_meta]
)
def test_damaged_cache_is_ignored_and_rewritten(tmp_path, reads, caplog, damage):
    train, _ = _write(tmp_path / "d")
    load_dataset(tmp_path / "d")
    cache = _cache(tmp_path / "d")
    damage(cache)
    with caplog.at_level(logging.WARNING, logger="mheads.data.cache"):
        ds = load_dataset(tmp_path / "d")
    assert "ignoring unreadable data cache" in caplog.text
    assert len(reads) == 2
    np.testing.assert_array_equal(ds.train.images[:, 0], train[0])
    assert np.load(cache / "train_images.npy", mmap_mode="r").shape == (20, 1, 4, 4)
    load_dataset(tmp_path / "d")
    assert len(reads) == 2  # the rewritten cache is valid again
    assert _scratch(cache.parent) == []


def test_leftover_temporary_folder_is_ignored(tmp_path, reads):
    _write(tmp_path / "d")
    first = load_dataset(tmp_path / "d")
    cache = _cache(tmp_path / "d")
    # A writer that died before its rename: complete-looking content, but never at the cache's name.
    fresh = cache.with_name(f".{cache.name}.0123abcd.tmp")
    old = cache.with_name(f".{cache.name}.4567cdef.tmp")
    aside = cache.with_name(f".{cache.name}.89abcdef.old")
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
    assert _scratch(cache.parent) == [fresh.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "user-cache"]
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
        assert save_cache(source, "new", _dataset(seed=5)) is None  # the only location failed
    assert "[Errno 28] No space left on device" in caplog.text
    _assert_same(load_cache(source, "old"), old)
    assert _scratch(_cache(source).parent) == [] and load_cache(source, "new") is None


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
    assert save_cache(source, "new", _dataset(seed=5)) is None
    monkeypatch.setattr(cache_module.os, "rename", real)
    _assert_same(load_cache(source, "old"), old)  # the old cache was put back from where it was set aside
    assert _scratch(_cache(source).parent) == [] and load_cache(source, "new") is None


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
    leftovers = _scratch(_cache(source).parent)
    assert len(leftovers) == 1 and leftovers[0].endswith(".old")  # the old cache, set aside; no .tmp
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
        np.save(_cache(tmp_path / "d") / f"{key}.npy", payload, allow_pickle=True)
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


@pytest.mark.parametrize("archive", [False, True], ids=["folder", "tar"])
def test_loading_writes_nothing_into_or_beside_the_data(tmp_path, _user_cache, archive):
    data = tmp_path / "data"
    _write(data / "d")
    source = make_tar(data / "d", data / "d.tar", mode="w") if archive else data / "d"
    assert os.access(data, os.W_OK) and os.access(data / "d", os.W_OK)  # writable, yet left alone
    contents = {name: (data / name).read_bytes() for name in _listing(data) if (data / name).is_file()}
    before = (sorted(os.listdir(data)), _listing(data))

    first = load_dataset(source)
    assert (sorted(os.listdir(data)), _listing(data)) == before
    again = load_dataset(source)  # a load served by the cache writes nothing there either
    assert (sorted(os.listdir(data)), _listing(data)) == before
    assert {name: (data / name).read_bytes() for name in contents} == contents
    _assert_same(again, first)
    assert _cache(source).is_dir() and _cache(source).parent == _user_cache


def test_cache_dir_argument_holds_the_cache(tmp_path, _user_cache, reads):
    _write(tmp_path / "d")
    where = tmp_path / "elsewhere" / "caches"  # created on first use
    first = load_dataset(tmp_path / "d", cache_dir=where)
    cache = _cache(tmp_path / "d", where)
    assert cache.parent == where and sorted(where.iterdir()) == [cache]
    assert sorted(p.name for p in cache.iterdir()) == sorted([f"{k}.npy" for k in ARRAYS] + ["meta.json"])
    assert json.loads((cache / "meta.json").read_text())["fingerprint"] == fingerprint(tmp_path / "d")
    assert not _user_cache.exists()  # cache_dir wins over $MHEADS_CACHE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "elsewhere"]
    assert len(reads) == 1

    again = load_dataset(tmp_path / "d", cache_dir=str(where))
    assert len(reads) == 1  # served by the cache under cache_dir
    _assert_same(again, first)
    assert isinstance(again.train.images, np.memmap)

    load_dataset(tmp_path / "d")  # the default cache folder has no cache yet
    assert len(reads) == 2
    assert _cache(tmp_path / "d").parent == _user_cache and _cache(tmp_path / "d").is_dir()


def test_cache_under_xdg_cache_home(tmp_path, monkeypatch, _user_cache, reads):
    monkeypatch.delenv("MHEADS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _write(tmp_path / "data" / "d")
    first = load_dataset(tmp_path / "data" / "d")
    cache = _cache(tmp_path / "data" / "d")
    assert cache.parent == tmp_path / "xdg" / "mheads" and cache.is_dir()
    assert sorted((tmp_path / "xdg" / "mheads").iterdir()) == [cache]
    assert sorted(os.listdir(tmp_path / "data")) == ["d"]
    assert not (tmp_path / "home").exists() and not _user_cache.exists()
    _assert_same(load_dataset(tmp_path / "data" / "d"), first)
    assert len(reads) == 1


def test_cache_under_home_by_default(tmp_path, monkeypatch, reads):
    monkeypatch.delenv("MHEADS_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _write(tmp_path / "data" / "d")
    first = load_dataset(tmp_path / "data" / "d")
    cache = _cache(tmp_path / "data" / "d")
    assert cache.parent == tmp_path / "home" / ".cache" / "mheads" and cache.is_dir()
    assert sorted(os.listdir(tmp_path / "data")) == ["d"]
    _assert_same(load_dataset(tmp_path / "data" / "d"), first)
    assert len(reads) == 1


def test_mheads_cache_wins_over_xdg(tmp_path, monkeypatch, _user_cache):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    _write(tmp_path / "d")
    load_dataset(tmp_path / "d")
    assert _cache(tmp_path / "d").parent == _user_cache and _cache(tmp_path / "d").is_dir()
    assert not (tmp_path / "xdg").exists()


def test_sources_of_the_same_name_get_separate_caches(tmp_path, monkeypatch, _user_cache, reads):
    a_train, _ = _write(tmp_path / "a" / "d", seed=0)
    b_train, _ = _write(tmp_path / "b" / "d", seed=5)
    load_dataset(tmp_path / "a" / "d")
    load_dataset(tmp_path / "b" / "d")
    assert _cache(tmp_path / "a" / "d") != _cache(tmp_path / "b" / "d")
    assert len(list(_user_cache.glob("d-*.mheads-cache"))) == 2
    monkeypatch.chdir(tmp_path / "a")
    assert _cache(tmp_path / "a" / "d") == _cache(Path("d"))  # keyed on the resolved path
    np.testing.assert_array_equal(load_dataset("d").train.images[:, 0], a_train[0])
    np.testing.assert_array_equal(load_dataset(tmp_path / "b" / "d").train.images[:, 0], b_train[0])
    assert len(reads) == 2


@pytest.mark.parametrize("archive", [False, True], ids=["folder", "tar"])
def test_same_size_same_mtime_edit_invalidates_the_cache(tmp_path, reads, archive):
    train, _ = _write(tmp_path / "d")
    labels = "train-labels-idx1-ubyte"
    if archive:
        source = file = make_tar(tmp_path / "d", tmp_path / "d.tar", mode="w")  # uncompressed: bytes in place
        with tarfile.open(source) as tar:
            offset = tar.getmember(labels).offset_data
    else:
        source, file, offset = tmp_path / "d", tmp_path / "d" / labels, 0
    offset += 8  # past the idx header (magic number and count): the first training label
    first = load_dataset(source)
    np.testing.assert_array_equal(first.train.labels, train[1])
    assert load_dataset(source) is not None and len(reads) == 1  # cached

    st = file.stat()
    with open(file, "r+b") as handle:
        handle.seek(offset)
        assert handle.read(1) == bytes([train[1][0]])
        handle.seek(offset)
        handle.write(bytes([train[1][0] + 5]))
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (file.stat().st_size, file.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)

    want = train[1].copy()
    want[0] += 5
    again = load_dataset(source)
    assert len(reads) == 2  # the source was read again
    np.testing.assert_array_equal(again.train.labels, want)
    np.testing.assert_array_equal(again.train.images, first.train.images)
    np.testing.assert_array_equal(load_dataset(source).train.labels, want)
    assert len(reads) == 2  # and the rewritten cache holds the new labels


def test_cached_dataset_hashes_the_source_only_where_a_cache_is(tmp_path, monkeypatch):
    _write(tmp_path / "d")
    hashed = []
    real = cache_module.fingerprint
    monkeypatch.setattr(cache_module, "fingerprint", lambda p: hashed.append(p) or real(p))
    assert cached_dataset(tmp_path / "d", tmp_path / "c") is None and hashed == []  # no cache: no hashing
    want = load_dataset(tmp_path / "d", cache_dir=tmp_path / "c")
    _assert_same(cached_dataset(tmp_path / "d", tmp_path / "c"), want)
    (tmp_path / "d" / "t10k-labels-idx1-ubyte").write_bytes(b"edited")  # the source changed: no match
    assert cached_dataset(tmp_path / "d", tmp_path / "c") is None and len(hashed) == 2
