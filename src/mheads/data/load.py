"""`load_dataset`: one entry point from a name or path to an in-memory `Dataset`."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from mheads.data.cache import fingerprint, load_cache, save_cache
from mheads.data.dataset import Dataset
from mheads.data.detect import ACCEPTED_LAYOUTS, detect_layout
from mheads.data.embedded import EMBEDDED_NAME, load_embedded
from mheads.data.errors import DataError
from mheads.data.sources import ARCHIVE_SUFFIXES, is_archive_name, open_source
from mheads.data.tars import is_tar

__all__ = ["dataset_name", "load_dataset"]

log = logging.getLogger(__name__)


def dataset_name(path: Path) -> str:
    """The data set's name: the file or folder name without an archive suffix."""
    name = Path(os.path.abspath(path)).name  # "." or "data/" still name the folder
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_path(path: Path) -> None:
    if not path.exists():
        raise DataError(
            f"{path}: no such file or folder; expected a data folder, a tar archive, or {EMBEDDED_NAME!r} "
            "(the embedded default)"
        )
    if path.is_file() and not is_archive_name(path):
        if not is_tar(path):  # not tarfile.is_tarfile: it reads a first header of any declared size
            raise DataError(
                f"{path}: a file that is not a tar archive; expected a folder or a "
                f"{'/'.join(ARCHIVE_SUFFIXES)} "
                f"archive holding {ACCEPTED_LAYOUTS}"
            )
    if not path.is_file() and not path.is_dir():
        raise DataError(
            f"{path}: neither a regular file nor a folder; expected a data folder or a tar archive"
        )


def load_dataset(
    source: str | os.PathLike | None = None, *, cache: bool = True, cache_dir: str | os.PathLike | None = None
) -> Dataset:
    """Load a data set into memory as uint8 images and int64 labels.

    source: None or "fashion-mnist-subset" for the embedded subset; otherwise the path of a folder or
    tar archive holding one of the layouts in `mheads.data.detect.ACCEPTED_LAYOUTS`.
    cache: reuse and write the memory-mapped cache described in `mheads.data.cache`.
    cache_dir: where that cache lives (``data.cache_dir``; default: ``mheads.data.cache.user_cache_dir()``).

    Raises `DataError` (a ValueError) with a one-line message for any bad input.
    """
    if source is None or (isinstance(source, str) and source == EMBEDDED_NAME):
        return load_embedded()
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path, {EMBEDDED_NAME!r} or None, got {type(source).__name__}")
    path = Path(source).expanduser()
    _check_path(path)
    try:
        stamp = fingerprint(path) if cache else ""
    except OSError as exc:
        raise DataError(f"{exc.filename or path}: cannot read ({exc.strerror or exc})") from exc
    if cache and (cached := load_cache(path, stamp, cache_dir)) is not None:
        return cached
    start = time.perf_counter()
    name = dataset_name(path)
    with open_source(path) as src:
        layout = detect_layout(src)
        train, test, classes = layout.format.read(src, layout.root, name)
    dataset = Dataset(name=name, train=train, test=test, classes=classes)
    log.info("read %s (%s) in %.1f s", path, layout.format.kind, time.perf_counter() - start)
    if cache:
        save_cache(path, stamp, dataset, cache_dir)
    return dataset
