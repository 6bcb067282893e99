"""A compressed `.npz` copy of a decoded data set, so that the second load takes a second, not minutes.

Where: beside the source (``<source>.mheads.npz``) when its folder is writable, otherwise under
``$MHEADS_CACHE`` (default ``~/.cache/mheads``). A folder without any write permission bit counts as
read-only even for root, so shared read-only copies of data sets are never written into.
Validity: the cache stores a fingerprint of the source (size and modification time of the archive,
or of every file in a folder) and is ignored once the source changes. Writes are atomic (temporary
file, fsync, rename), so a crash leaves the old cache or none, never a torn one. The cache is loaded
with ``allow_pickle=False``: it can hold only plain arrays.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from mheads.core.atomic import OutputError, atomic_write_bytes
from mheads.data.dataset import Dataset, Split
from mheads.data.errors import DataError
from mheads.data.sources import DirSource

__all__ = ["CACHE_VERSION", "cache_locations", "fingerprint", "load_cache", "save_cache"]

log = logging.getLogger(__name__)

# Bump when the readers' output for the same files changes, so old caches are rebuilt.
CACHE_VERSION = 1
_KEYS = ("train_images", "train_labels", "test_images", "test_labels", "classes", "name", "fingerprint")


def fingerprint(path: Path) -> str:
    """Changes whenever the source's bytes plausibly changed (size or mtime of any file)."""
    if path.is_file():
        st = path.stat()
        return f"v{CACHE_VERSION}:file:{st.st_size}:{st.st_mtime_ns}"
    digest = hashlib.blake2b(digest_size=16)
    files = DirSource(path).files()
    for name in files:
        st = (path / name).stat()
        digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"v{CACHE_VERSION}:dir:{len(files)}:{digest.hexdigest()}"


def _user_cache_dir() -> Path:
    return Path(os.environ.get("MHEADS_CACHE") or Path.home() / ".cache" / "mheads").expanduser()


def _writable(folder: Path) -> bool:
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def cache_locations(path: Path) -> list[Path]:
    """Where the cache of `path` may live, in the order they are tried for writing."""
    path = path.resolve()
    tag = hashlib.blake2b(str(path).encode(), digest_size=8).hexdigest()
    user = _user_cache_dir() / f"{path.name}-{tag}.npz"
    beside = path.parent / f"{path.name}.mheads.npz"
    return [beside, user] if _writable(path.parent) else [user]


def load_cache(path: Path, expected: str) -> Dataset | None:
    """The cached data set of `path` if a cache with fingerprint `expected` exists, else None."""
    resolved = path.resolve()
    candidates = {resolved.parent / f"{resolved.name}.mheads.npz", *cache_locations(path)}
    for cache in sorted(candidates):
        if not cache.is_file():
            continue
        try:
            # Open the file ourselves: np.load leaks its handle when the zip is damaged.
            with open(cache, "rb") as handle, np.load(handle, allow_pickle=False) as z:
                if set(_KEYS) - set(z.files) or str(z["fingerprint"]) != expected:
                    continue
                dataset = Dataset(
                    name=str(z["name"]),
                    train=Split(z["train_images"], z["train_labels"]),
                    test=Split(z["test_images"], z["test_labels"]),
                    classes=[str(c) for c in z["classes"]],
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, DataError) as exc:
            # A damaged cache is only a lost shortcut: read the source again (and overwrite it).
            log.warning("ignoring unreadable data cache %s (%s)", cache, exc)
            continue
        log.info("loaded data set from cache %s", cache)
        return dataset
    return None


def save_cache(path: Path, expected: str, dataset: Dataset) -> Path | None:
    """Write the cache of `path`; returns where, or None if no location was writable (not an error)."""
    arrays = {
        "train_images": dataset.train.images,
        "train_labels": dataset.train.labels,
        "test_images": dataset.test.images,
        "test_labels": dataset.test.labels,
        "classes": np.array(dataset.classes, dtype=str),
        "name": np.array(dataset.name),
        "fingerprint": np.array(expected),
    }
    buffer = io.BytesIO()
    # What np.savez_compressed writes, at deflate level 1: half the time of its level 6 for a cache
    # about 3% larger (CIFAR-10: ~7 s less on first load).
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    for cache in cache_locations(path):
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(cache, buffer.getbuffer())
        except (OSError, OutputError) as exc:
            log.warning("cannot write data cache %s (%s)", cache, exc)
            continue
        log.info("wrote data cache %s", cache)
        return cache
    return None
