"""CIFAR-10 and CIFAR-100 in their two official forms: "python version" pickles and binary batches.

See www.cs.toronto.edu/~kriz/cifar.html. Python batches are dicts with "data" (N, 3*H*W) uint8
rows in channel-major order and "labels" (CIFAR-10) or "fine_labels" (CIFAR-100). Binary batches are
records of label byte(s) then 3072 pixel bytes: CIFAR-10 has one label byte, CIFAR-100 a coarse and
a fine one. CIFAR-100 is read with its 100 fine labels.
"""

from __future__ import annotations

import re

import numpy as np

from mheads.data.dataset import Split
from mheads.data.errors import DataError
from mheads.data.labels import check_label_range, read_classes_file
from mheads.data.safe_pickle import safe_unpickle
from mheads.data.sources import Source

__all__ = [
    "BINARY10_LAYOUT",
    "BINARY100_LAYOUT",
    "PYTHON10_LAYOUT",
    "PYTHON100_LAYOUT",
    "match_binary10",
    "match_binary100",
    "match_python10",
    "match_python100",
    "read_binary10",
    "read_binary100",
    "read_python10",
    "read_python100",
]

PYTHON10_LAYOUT = "CIFAR-10 python batches (data_batch_1..5, test_batch, batches.meta)"
PYTHON100_LAYOUT = "CIFAR-100 python batches (train, test, meta)"
BINARY10_LAYOUT = "CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin, batches.meta.txt)"
BINARY100_LAYOUT = "CIFAR-100 binary batches (train.bin, test.bin, fine_label_names.txt)"

_PY_BATCH = re.compile(r"^data_batch_(\d+)$")
_BIN_BATCH = re.compile(r"^data_batch_(\d+)\.bin$")
_PIXELS = 3 * 32 * 32  # binary records are always 32x32 RGB


def _batches(names: set[str], pattern: re.Pattern[str]) -> list[str]:
    found = [(int(m[1]), n) for n in names if (m := pattern.match(n))]
    return [n for _, n in sorted(found)]


def _missing(names: set[str], required: dict[str, bool]) -> list[str] | None:
    """None when none of the layout's files is present, else the names of those missing."""
    if not any(required.values()):
        return None
    return [name for name, present in required.items() if not present]


def match_python10(names: set[str]) -> list[str] | None:
    return _missing(
        names,
        {
            "data_batch_1..5": bool(_batches(names, _PY_BATCH)),
            "test_batch": "test_batch" in names,
            "batches.meta": "batches.meta" in names,
        },
    )


def match_python100(names: set[str]) -> list[str] | None:
    # "train" and "test" alone are too common to count as a sign of CIFAR-100; "meta" is.
    if "meta" not in names and not {"train", "test"} <= names:
        return None
    return [n for n in ("train", "test", "meta") if n not in names]


def match_binary10(names: set[str]) -> list[str] | None:
    return _missing(
        names,
        {
            "data_batch_1..5.bin": bool(_batches(names, _BIN_BATCH)),
            "test_batch.bin": "test_batch.bin" in names,
            "batches.meta.txt": "batches.meta.txt" in names,
        },
    )


def match_binary100(names: set[str]) -> list[str] | None:
    return _missing(
        names,
        {
            "train.bin": "train.bin" in names,
            "test.bin": "test.bin" in names,
            "fine_label_names.txt": "fine_label_names.txt" in names,
        },
    )


def _load_dict(source: Source, name: str) -> dict[str, object]:
    obj = safe_unpickle(source.read(name), source.where(name))
    if not isinstance(obj, dict):
        raise DataError(f"{source.where(name)}: pickle holds a {type(obj).__name__}; expected a dict")
    # Python 3 re-pickled copies have bytes keys; the originals decode to str.
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _field(batch: dict[str, object], key: str, where: str) -> object:
    if key not in batch:
        raise DataError(f"{where}: no {key!r} entry; found {sorted(batch)}")
    return batch[key]


def _names(batch: dict[str, object], key: str, where: str) -> list[str]:
    value = _field(batch, key, where)
    if not isinstance(value, list) or not value or not all(isinstance(v, (str, bytes)) for v in value):
        raise DataError(f"{where}: {key!r} must be a non-empty list of class names")
    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]


def _python_batch(source: Source, name: str, label_key: str) -> Split:
    where = source.where(name)
    batch = _load_dict(source, name)
    data = _field(batch, "data", where)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{where}: 'data' must be a uint8 array of shape (N, 3*H*W)")
    side = round((data.shape[1] / 3) ** 0.5)
    if 3 * side * side != data.shape[1]:
        raise DataError(
            f"{where}: 'data' rows have {data.shape[1]} values; expected 3*H*W with H = W (3072 for 32x32)"
        )
    labels = np.asarray(_field(batch, label_key, where))
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise DataError(
            f"{where}: {label_key!r} must hold {len(data)} integer labels (one per row of 'data'), "
            f"got {labels.dtype} array of shape {labels.shape}"
        )
    return Split(data.reshape(-1, 3, side, side).copy(), labels.astype(np.int64))


def _concat(parts: list[Split], wheres: list[str] | None = None) -> Split:
    """The batches of a split as one; batches holding images of another size are refused naming both files."""
    for i, p in enumerate(parts[1:], 1):
        if p.images.shape[1:] != parts[0].images.shape[1:]:
            first, other = (wheres[0], wheres[i]) if wheres else ("batch 0", f"batch {i}")
            size = "x".join(map(str, p.images.shape[2:]))
            want = "x".join(map(str, parts[0].images.shape[2:]))
            raise DataError(
                f"{other}: images are {size} but {first}'s are {want}; all batches must share one size"
            )
    return Split(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))


def _checked(split: Split, classes: list[str], where: str) -> Split:
    check_label_range(split.labels, len(classes), where)
    return split


def read_python10(source: Source, root: str, name: str) -> tuple[Split, Split, list[str]]:
    prefix = f"{root}/" if root else ""
    names = source.names_under(root)
    classes = _names(
        _load_dict(source, prefix + "batches.meta"), "label_names", source.where(prefix + "batches.meta")
    )
    batches = _batches(names, _PY_BATCH)
    train = [
        _checked(_python_batch(source, prefix + n, "labels"), classes, source.where(prefix + n))
        for n in batches
    ]
    test = _python_batch(source, prefix + "test_batch", "labels")
    train_split = _concat(train, [source.where(prefix + n) for n in batches])
    return train_split, _checked(test, classes, source.where(prefix + "test_batch")), classes


def read_python100(source: Source, root: str, name: str) -> tuple[Split, Split, list[str]]:
    prefix = f"{root}/" if root else ""
    classes = _names(_load_dict(source, prefix + "meta"), "fine_label_names", source.where(prefix + "meta"))
    train = _python_batch(source, prefix + "train", "fine_labels")
    test = _python_batch(source, prefix + "test", "fine_labels")
    return (
        _checked(train, classes, source.where(prefix + "train")),
        _checked(test, classes, source.where(prefix + "test")),
        classes,
    )


def _binary_batch(source: Source, name: str, label_bytes: int, classes: list[str]) -> Split:
    where = source.where(name)
    data = source.read(name)
    record = label_bytes + _PIXELS
    if not data or len(data) % record:
        raise DataError(
            f"{where}: {len(data)} bytes is not a whole number of {record}-byte records "
            f"({label_bytes} label byte(s) + 3072 pixels); file truncated or not a CIFAR binary batch"
        )
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, label_bytes - 1].astype(np.int64)  # CIFAR-100: byte 0 coarse, byte 1 fine
    check_label_range(labels, len(classes), where)
    return Split(rows[:, label_bytes:].reshape(-1, 3, 32, 32).copy(), labels)


def read_binary10(source: Source, root: str, name: str) -> tuple[Split, Split, list[str]]:
    prefix = f"{root}/" if root else ""
    classes = read_classes_file(source, prefix + "batches.meta.txt")
    train = [
        _binary_batch(source, prefix + n, 1, classes) for n in _batches(source.names_under(root), _BIN_BATCH)
    ]
    return _concat(train), _binary_batch(source, prefix + "test_batch.bin", 1, classes), classes


def read_binary100(source: Source, root: str, name: str) -> tuple[Split, Split, list[str]]:
    prefix = f"{root}/" if root else ""
    classes = read_classes_file(source, prefix + "fine_label_names.txt")
    train = _binary_batch(source, prefix + "train.bin", 2, classes)
    return train, _binary_batch(source, prefix + "test.bin", 2, classes), classes
