"""An uncompressed, memory-mapped copy of a decoded data set: the second load takes a second, not minutes.

Layout: one folder per source, ``<source name>-<hash of its path>.mheads-cache`` in the cache folder (see
"Where" below), holding ``train_images.npy`` and ``test_images.npy`` (uint8), ``train_labels.npy`` and
``test_labels.npy`` (int64), plain uncompressed ``.npy`` files, and ``meta.json`` (data set name, class names,
source fingerprint, cache version, and the shape and dtype of each array).

Loading maps the image arrays instead of reading them (``np.load(mmap_mode="c")``, copy-on-write): pages
come from the page cache on demand, so a decoded data set larger than RAM (but not than the disk) still
trains, and ``torch.from_numpy`` on the result gives a writable tensor sharing those pages. Labels are small
and read into memory. Everything is loaded with ``allow_pickle=False``: the cache can hold only plain arrays.

Where: never beside the data (shared data sets are often read-only, and users' data folders are not ours to
litter), but in the cache folder: ``data.cache_dir`` when a config sets it, else ``$MHEADS_CACHE``, else the
platform's user cache directory (``$XDG_CACHE_HOME/mheads``, default ``~/.cache/mheads``), as
``<source name>-<hash of the source's path>.mheads-cache``.

Validity: ``meta.json`` records a fingerprint of the source, a hash of its content (every byte of the archive,
or every file's name and bytes in a folder: a few milliseconds for CIFAR-10's 20 MB archive), so a source
edited in place, even keeping its size and modification time, is read again; each ``.npy`` must also have
exactly the shape and dtype that ``meta.json`` records and its full length, so a damaged cache is ignored
(with a warning) rather than half read.

Writes are atomic: the files are written and fsynced in a temporary sibling folder (``meta.json`` last),
which is then renamed into place. A stale cache is first renamed aside and removed only after the new one
is in place, so a crash leaves the old valid cache or none, never a torn one. Leftover temporary folders of
crashed writers are never read, and are removed by a later save once they are an hour old.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import time
from pathlib import Path

import numpy as np

from mheads.core.atomic import fsync_dir, os_reason, write_durable
from mheads.data.dataset import Dataset, Split
from mheads.data.errors import DataError
from mheads.data.sources import DirSource

__all__ = [
    "CACHE_SUFFIX",
    "CACHE_VERSION",
    "cache_locations",
    "cached_dataset",
    "fingerprint",
    "load_cache",
    "save_cache",
    "user_cache_dir",
]

log = logging.getLogger(__name__)

# Bump when the readers' output for the same files, or the cache layout, changes, so old caches are rebuilt.
# Version 1 was a single compressed `<source>.mheads.npz`; such files are left alone and never read. Version 3
# keys the cache on a hash of the source's content (version 2: its sizes and modification times).
CACHE_VERSION = 3
CACHE_SUFFIX = ".mheads-cache"
_META = "meta.json"
# The arrays of a cache and the dtype each must have.
_ARRAYS: dict[str, np.dtype] = {
    "train_images": np.dtype(np.uint8),
    "train_labels": np.dtype(np.int64),
    "test_images": np.dtype(np.uint8),
    "test_labels": np.dtype(np.int64),
}
_WRITE_CHUNK_BYTES = 64 << 20  # copy at most this much of an array at a time when writing it
_STALE_SECONDS = 3600  # a temporary folder untouched this long belongs to a writer that died
_MAX_META_BYTES = 64 << 20  # meta.json holds names and shapes: 100,000 class names take a few MB


def _hash_file(digest, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)


def fingerprint(path: Path) -> str:
    """A hash of the source's content: it changes whenever any byte (or, in a folder, any file name) does."""
    digest = hashlib.blake2b(digest_size=16)
    if path.is_file():
        _hash_file(digest, path)
        return f"v{CACHE_VERSION}:file:{digest.hexdigest()}"
    files = DirSource(path).files()
    for name in files:
        digest.update(f"{name}\0".encode())
        _hash_file(digest, path / name)
    return f"v{CACHE_VERSION}:dir:{len(files)}:{digest.hexdigest()}"


def user_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` (``data.cache_dir``), else ``$MHEADS_CACHE``, else ``$XDG_CACHE_HOME/mheads`` or
    ``~/.cache/mheads``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("MHEADS_CACHE"):
        return Path(os.environ["MHEADS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mheads"


def cache_locations(path: Path, cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where the cache folder of `path` lives (a list, for the callers that try several)."""
    path = path.resolve()
    tag = hashlib.blake2b(str(path).encode(), digest_size=8).hexdigest()
    return [user_cache_dir(cache_dir) / f"{path.name}-{tag}{CACHE_SUFFIX}"]


# ----------------------------------------------------------------------------------------------- reading


def _read_meta(cache: Path) -> dict:
    with open(cache / _META, "rb") as f:
        data = f.read(_MAX_META_BYTES + 1)
    if len(data) > _MAX_META_BYTES:
        raise ValueError(f"{_META} is over {_MAX_META_BYTES >> 20} MiB")
    meta = json.loads(data.decode("utf-8"))
    if not isinstance(meta, dict):
        raise ValueError(f"{_META} is not a JSON object")
    return meta


def _check_meta(meta: dict) -> None:
    """Raise ValueError unless `meta` has every field, each of the right type."""
    if not isinstance(meta.get("name"), str) or not isinstance(meta.get("fingerprint"), str):
        raise ValueError(f"{_META}: name and fingerprint must be strings")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{_META}: classes must be a list of strings")
    arrays = meta.get("arrays")
    if not isinstance(arrays, dict) or set(arrays) != set(_ARRAYS):
        raise ValueError(f"{_META}: arrays must describe exactly {', '.join(_ARRAYS)}")
    for key, dtype in _ARRAYS.items():
        entry = arrays[key]
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if (
            not isinstance(shape, list)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
            or entry.get("dtype") != dtype.str
        ):
            raise ValueError(f"{_META}: bad entry for {key}: {entry!r}")


def _check_npy(file: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Raise ValueError unless `file` is a C-order .npy of exactly this shape and dtype, and complete."""
    with open(file, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f"{file.name}: unsupported .npy version {version}")
        got_shape, fortran_order, got_dtype = header
        if tuple(got_shape) != shape or got_dtype != dtype or fortran_order:
            raise ValueError(
                f"{file.name} holds {got_dtype} {tuple(got_shape)}"
                f"{' (Fortran order)' if fortran_order else ''}; expected {dtype} {shape}"
            )
        expected = handle.tell() + math.prod(shape) * dtype.itemsize  # Python ints: no wrap-around
        size = os.fstat(handle.fileno()).st_size
    if size != expected:
        raise ValueError(f"{file.name} is {size} bytes; expected {expected} (truncated or damaged)")


def _load_folder(cache: Path, expected: str) -> Dataset | None:
    """The data set in `cache`, None if it belongs to another source version; raises if damaged."""
    meta = _read_meta(cache)
    if meta.get("cache_version") != CACHE_VERSION or meta.get("fingerprint") != expected:
        return None
    _check_meta(meta)
    arrays = {}
    for key, dtype in _ARRAYS.items():
        file = cache / f"{key}.npy"
        _check_npy(file, tuple(meta["arrays"][key]["shape"]), dtype)
        # Images are mapped copy-on-write ("c"): writable without touching the file, read on demand.
        arrays[key] = np.load(file, mmap_mode="c" if key.endswith("images") else None, allow_pickle=False)
    return Dataset(
        name=meta["name"],
        train=Split(arrays["train_images"], arrays["train_labels"]),
        test=Split(arrays["test_images"], arrays["test_labels"]),
        classes=list(meta["classes"]),
    )


def load_cache(path: Path, expected: str, cache_dir: str | os.PathLike | None = None) -> Dataset | None:
    """The cached data set of `path` if a cache with fingerprint `expected` exists, else None.

    Image arrays come back as copy-on-write `np.memmap`s of the cache files; labels are in memory.
    """
    for cache in cache_locations(path, cache_dir):
        if not cache.is_dir():
            continue
        try:
            dataset = _load_folder(cache, expected)
        except (OSError, ValueError, KeyError, EOFError, DataError) as exc:
            # A damaged cache is only a lost shortcut: read the source again (and overwrite it).
            log.warning("ignoring unreadable data cache %s (%s)", cache, exc)
            continue
        if dataset is None:
            continue
        log.info("loaded data set from cache %s", cache)
        return dataset
    return None


def cached_dataset(path: Path, cache_dir: str | os.PathLike | None = None) -> Dataset | None:
    """The cached data set of `path` if its cache exists and verifies against the source as it is now (the
    key :func:`mheads.data.load.load_dataset` writes under), else None. The source is hashed only when a
    cache folder is there, so looking costs nothing without one; an unreadable source is None too (its
    reader names what is wrong with it)."""
    if not any(cache.is_dir() for cache in cache_locations(path, cache_dir)):
        return None
    try:
        stamp = fingerprint(path)
    except (OSError, DataError):
        return None
    return load_cache(path, stamp, cache_dir)


# ----------------------------------------------------------------------------------------------- writing


def _write_npy(file: Path, array: np.ndarray) -> None:
    """Write `array` as a C-order .npy at `file` (which must not exist), a chunk at a time, and fsync it."""
    descr = np.lib.format.dtype_to_descr(array.dtype)
    header = {"descr": descr, "fortran_order": False, "shape": array.shape}
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    with os.fdopen(fd, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        rows = max(1, _WRITE_CHUNK_BYTES // max(1, array[:1].nbytes))
        for start in range(0, len(array), rows):
            # A C-order copy of a chunk only: a non-contiguous array is never copied whole.
            chunk = np.ascontiguousarray(array[start : start + rows])
            handle.write(chunk.data.cast("B"))
        handle.flush()
        os.fsync(handle.fileno())


def _write_folder(folder: Path, expected: str, dataset: Dataset) -> None:
    arrays = {
        "train_images": dataset.train.images,
        "train_labels": dataset.train.labels,
        "test_images": dataset.test.images,
        "test_labels": dataset.test.labels,
    }
    folder.mkdir()
    for key, array in arrays.items():
        _write_npy(folder / f"{key}.npy", array)
    meta = {
        "cache_version": CACHE_VERSION,
        "name": dataset.name,
        "classes": [str(c) for c in dataset.classes],
        "fingerprint": expected,
        "arrays": {k: {"shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()},
    }
    # Last: a folder without meta.json is never accepted.
    write_durable(folder / _META, (json.dumps(meta, indent=1) + "\n").encode())
    fsync_dir(folder)


def _scratch_name(cache: Path, kind: str) -> Path:
    # Hidden, so a data folder holding the cache is never read as data; unique per writer.
    return cache.with_name(f".{cache.name}.{secrets.token_hex(4)}.{kind}")


def _remove_quietly(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError as exc:
        log.warning("cannot remove %s (%s)", path, os_reason(exc))


def _newest_mtime(folder: Path) -> float:
    newest = folder.lstat().st_mtime
    if folder.is_dir() and not folder.is_symlink():
        for entry in os.scandir(folder):
            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return newest


def _remove_leftovers(cache: Path) -> None:
    """Remove temporary and set-aside folders of `cache` left by writers that died (an hour untouched)."""
    prefix = f".{cache.name}."
    now = time.time()
    try:
        entries = [p for p in cache.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        if not entry.name.endswith((".tmp", ".old")):
            continue
        try:
            stale = now - _newest_mtime(entry) > _STALE_SECONDS
        except OSError:
            continue  # removed meanwhile by its owner
        if stale:
            _remove_quietly(entry)


def _move_into_place(new: Path, cache: Path) -> None:
    """Rename folder `new` to `cache`, replacing what is there without ever exposing a torn cache."""
    for _ in range(3):
        aside = None
        if os.path.lexists(cache):
            # rename(2) cannot replace a non-empty folder: move the old one aside first. A crash from here
            # until the rename below leaves no cache, never a mix of two.
            aside = _scratch_name(cache, "old")
            os.rename(cache, aside)
        try:
            os.rename(new, cache)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                # Another writer put its cache in place between the two renames: set that one aside too.
                if aside is not None:
                    _remove_quietly(aside)
                continue
            if aside is not None:  # keep the old cache rather than none
                try:
                    os.rename(aside, cache)
                except OSError:
                    _remove_quietly(aside)
            raise
        if aside is not None:
            _remove_quietly(aside)
        fsync_dir(cache.parent)
        return
    raise OSError(errno.EEXIST, f"{cache} keeps being replaced by other writers")


def save_cache(
    path: Path, expected: str, dataset: Dataset, cache_dir: str | os.PathLike | None = None
) -> Path | None:
    """Write the cache of `path`; returns where, or None if no location was writable (not an error)."""
    for cache in cache_locations(path, cache_dir):
        tmp = None
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            _remove_leftovers(cache)
            tmp = _scratch_name(cache, "tmp")
            _write_folder(tmp, expected, dataset)
            _move_into_place(tmp, cache)
        except BaseException as exc:
            if tmp is not None and os.path.lexists(tmp):
                _remove_quietly(tmp)
            if not isinstance(exc, OSError):
                raise
            log.warning("cannot write data cache %s (%s)", cache, os_reason(exc))
            continue
        log.info("wrote data cache %s", cache)
        return cache
    return None
