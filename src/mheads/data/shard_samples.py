"""WebDataset-style shards, read for the streaming index (:mod:`mheads.data.index`): a folder of
uncompressed ``.tar`` files whose names contain ``train`` or ``test``/``val``, each sample a group of members
sharing a key (``0001.jpg`` + ``0001.cls``, the label as decimal text), with an optional ``classes.txt``
beside them naming the labels in order. Each sample is located by byte offset, never extracted."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np

from mheads.data.errors import DataError
from mheads.data.imagefolder import IMAGE_SUFFIXES, natural_key
from mheads.data.labels import CLASSES_FILE, classes_from_labels, read_classes_file
from mheads.data.sources import DirSource
from mheads.data.tars import TarReader

__all__ = ["Sample", "shard_classes", "shard_samples", "tar_members"]

_TEST_SPLITS = ("test", "val")  # a shard named for either is a test shard (as image folders name them)
_LABEL_EXTS = ("cls", "label", "cls.txt")
_LABEL_TEXT = re.compile(rb"\s*(\d{1,18})\s*")  # 18 digits stay below 2**63
_MAX_LABEL_BYTES = 64


def tar_members(tar_path: Path) -> dict[str, tarfile.TarInfo]:
    """The regular members of an uncompressed tar by name; a truncated or corrupt tar, or one listing more
    members than memory allows, is refused (:class:`mheads.data.tars.TarReader`), never indexed in part."""
    members = {}
    with TarReader(tar_path, plain_only=True) as reader:
        for info in reader.members():  # no size bound here: members are read one by one, each bounded
            parts = tuple(q for q in PurePosixPath(info.name.lstrip("/")).parts if q != ".")
            if info.isreg() and parts and ".." not in parts and not any(q.startswith(".") for q in parts):
                members["/".join(parts)] = info
    return members


def _shard_split(name: str) -> str | None:
    low = name.lower()
    if "train" in low:
        return "train"
    return "test" if any(s in low for s in _TEST_SPLITS) else None


def _read_label(f, info: tarfile.TarInfo, where: str) -> int:
    """The class index in label member ``info`` of the open shard ``f``: decimal digits only, so "2.7", "-1",
    "1_000" or "0x10" are refused rather than truncated or reinterpreted."""
    if info.size > _MAX_LABEL_BYTES:
        raise DataError(
            f"{where}: label file of {info.size} bytes; expected a class index as decimal text "
            f"(at most {_MAX_LABEL_BYTES} bytes)"
        )
    f.seek(info.offset_data)
    text = f.read(info.size)
    match = _LABEL_TEXT.fullmatch(text)
    if match is None:
        raise DataError(
            f"{where}: label {text[:20]!r} is not a class index; expected a non-negative decimal "
            "integer (at most 18 digits) such as 3: fractions, signs and other text are refused, "
            "not rounded"
        )
    return int(match[1])


class Sample(NamedTuple):
    """One sample of a shard: its image member's name, class index, shard (a position in the containers),
    the image's byte offset and size in the shard, and its label member's extension."""

    name: str
    label: int
    container: int
    offset: int
    size: int
    label_ext: str


def shard_samples(p: Path, shards: list[str]) -> tuple[dict[str, list[Sample]], list[str]]:
    """The samples of each split (``{"train": [...], "test": [...]}``, in shard then key order) and the
    shards' paths (``Sample.container`` indexes them), from the ``shards`` of the folder ``p``; a shard
    whose name says no split, or a split without shards, is refused."""
    per_split: dict[str, list[Sample]] = {"train": [], "test": []}
    containers: list[str] = []
    for shard in sorted(shards, key=natural_key):
        split = _shard_split(shard)
        if split is None:
            raise DataError(
                f"{p / shard}: shard name says neither train nor test/val; name shards "
                "like train-000000.tar and test-000000.tar"
            )
        path = p / shard
        samples = _shard_members(path)
        containers.append(str(path))
        per_split[split].extend(_shard_samples(path, samples, len(containers) - 1))
    for split, rows in per_split.items():
        if not rows:
            raise DataError(
                f"data.source {p}: no {split} shards; expected *{split}*.tar files beside the other split's"
            )
    return per_split, containers


def _shard_members(path: Path) -> dict[str, dict[str, tarfile.TarInfo]]:
    """The members of the shard ``path`` by sample key (the member's name up to its first dot) and
    extension (lower case)."""
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    for name, info in tar_members(path).items():
        base = PurePosixPath(name)
        key, _, ext = base.name.partition(".")
        samples.setdefault(str(base.parent / key), {})[ext.lower()] = info
    return samples


def _shard_samples(path: Path, samples: dict[str, dict[str, tarfile.TarInfo]], c: int) -> list[Sample]:
    """The samples of shard ``c`` (``path``) in key order, each label read; a sample without an image or a
    label member is refused, naming it."""
    rows = []
    with open(path, "rb") as f:
        for key in sorted(samples, key=natural_key):
            parts = samples[key]
            image = next((e for e in parts if "." + e in IMAGE_SUFFIXES), None)
            label = next((e for e in _LABEL_EXTS if e in parts), None)
            if image is None or label is None:
                raise DataError(
                    f"{path}:{key}: sample has {sorted(parts)}; expected an image "
                    f"({'/'.join(sorted(s[1:] for s in IMAGE_SUFFIXES))}) and a label "
                    "(.cls holding the class index)"
                )
            y = _read_label(f, parts[label], f"{path}:{key}.{label}")
            info = parts[image]
            rows.append(Sample(f"{key}.{image}", y, c, info.offset_data, info.size, label))
    return rows


def shard_classes(
    p: Path, per_split: dict[str, list[Sample]], containers: list[str], files: set[str]
) -> list[str]:
    """The class names: the folder's classes file, which must cover the largest label; else one per class
    index up to the largest (errors name the label file of the largest label)."""
    top = max((r for rows in per_split.values() for r in rows), key=lambda r: r.label)
    where = f"{containers[top.container]}:{top.name.rsplit('.', 1)[0]}.{top.label_ext}"
    if CLASSES_FILE in files:
        classes = read_classes_file(DirSource(p), CLASSES_FILE)
        if top.label >= len(classes):
            raise DataError(
                f"{where}: label {top.label} is outside the {len(classes)} classes of "
                f"{p / CLASSES_FILE}; expected a class index 0..{len(classes) - 1}"
            )
        return classes
    labels = np.fromiter((r.label for rows in per_split.values() for r in rows), np.int64)
    return classes_from_labels(labels, where)
