"""MNIST-style idx files (MNIST, Fashion-MNIST, ...), raw or gzip-compressed.

Format (yann.lecun.com/exdb/mnist): two zero bytes, a type byte (0x08 = unsigned byte), a byte with
the number of dimensions, one big-endian uint32 per dimension, then the values in C order.
"""

from __future__ import annotations

import gzip
import io
import math
import re
import zlib

import numpy as np

from mheads.data.bounds import read_limit, too_big
from mheads.data.dataset import Split
from mheads.data.errors import DataError
from mheads.data.labels import (
    CLASSES_FILE,
    FASHION_MNIST_CLASSES,
    check_label_range,
    classes_from_labels,
    read_classes_file,
)
from mheads.data.sources import Source

__all__ = ["LAYOUT", "match", "parse_idx", "read"]

LAYOUT = (
    "MNIST-style idx files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte, each optionally .gz)"
)
# Some mirrors spell the files "train-images.idx3-ubyte".
_NAME = re.compile(r"^(train|t10k)-(images|labels)[-.]idx([13])-ubyte(\.gz)?$")
_ROLES = {
    ("train", "images"): "3",
    ("train", "labels"): "1",
    ("t10k", "images"): "3",
    ("t10k", "labels"): "1",
}


def _role_files(names: set[str]) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for name in sorted(names):
        m = _NAME.match(name)
        if m and _ROLES[(m[1], m[2])] == m[3]:
            role = (m[1], m[2])
            # Prefer the uncompressed copy when both exist: same content, faster to read.
            if role not in found or not m[4]:
                found[role] = name
    return found


def match(names: set[str]) -> list[str] | None:
    """None if no idx file is at this level, else the list of missing files ([] when complete)."""
    found = _role_files(names)
    if not found:
        return None
    return [f"{s}-{k}-idx{d}-ubyte[.gz]" for (s, k), d in _ROLES.items() if (s, k) not in found]


def _gunzip(data: bytes, where: str) -> bytes:
    """Decompress a gzipped idx file, never more than its header declares plus one byte: the header is
    inflated first and the size it declares checked against the read limit (`mheads.data.bounds`), then the
    rest is inflated up to that size. A few kilobytes of gzip can inflate to gigabytes, and gzip's own length
    field is neither checked nor trusted."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as stream:
            head = stream.read(4)
            ndim = head[3] if len(head) == 4 and head[:2] == b"\0\0" else 0
            head += stream.read(4 * ndim)
            if ndim == 0 or len(head) < 4 + 4 * ndim:
                return head  # parse_idx names what is wrong with a header this short
            dims = (int.from_bytes(head[i : i + 4], "big") for i in range(4, len(head), 4))
            declared = len(head) + math.prod(dims)  # Python ints: no overflow
            limit = read_limit()
            if declared > limit:
                raise too_big(f"{where}: idx header", declared, limit, "declares")
            # One byte more than declared, so parse_idx reports trailing data rather than ignoring it.
            rest = stream.read(declared - len(head) + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{where}: corrupt or truncated gzip data ({exc}); expected a gzip-compressed idx file"
        ) from exc
    return head + rest


def parse_idx(data: bytes, where: str, gzipped: bool) -> np.ndarray:
    """Decode one idx file into a uint8 array of the shape its header declares."""
    if gzipped:
        data = _gunzip(data, where)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{where}: not an idx file (bad magic number); expected bytes 00 00 <type> <ndim>")
    if data[2] != 0x08:
        raise DataError(
            f"{where}: idx value type 0x{data[2]:02x} is not supported; expected unsigned bytes (0x08)"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"{where}: truncated idx header ({len(data)} bytes for {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(shape)  # Python ints: a crafted header cannot overflow the product
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"{where}: idx file {problem}: {len(data)} bytes, expected {expected} for shape {shape}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_pair(source: Source, images_name: str, labels_name: str) -> Split:
    where_images, where_labels = source.where(images_name), source.where(labels_name)
    images = parse_idx(source.read(images_name), where_images, images_name.endswith(".gz"))
    labels = parse_idx(source.read(labels_name), where_labels, labels_name.endswith(".gz"))
    if images.ndim != 3:
        raise DataError(
            f"{where_images}: idx images have shape {images.shape}; expected 3 dimensions (N, H, W)"
        )
    if labels.ndim != 1:
        raise DataError(f"{where_labels}: idx labels have shape {labels.shape}; expected 1 dimension (N,)")
    if len(images) != len(labels):
        raise DataError(
            f"{where_labels}: {len(labels)} labels for {len(images)} images in {where_images}; "
            "expected one label per image"
        )
    # copy(): frombuffer views are read-only, and torch.from_numpy warns on those.
    return Split(images[:, None].copy(), labels.astype(np.int64))


def read(source: Source, root: str, name: str) -> tuple[Split, Split, list[str]]:
    """Read the train and t10k pairs under `root`.

    Class names come from a ``classes.txt`` beside the files; failing that, Fashion-MNIST's names when
    the data set's name contains "fashion"; otherwise the label numbers "0", "1", ...
    """
    prefix = f"{root}/" if root else ""
    names = source.names_under(root)
    files = _role_files(names)
    train = _read_pair(source, prefix + files[("train", "images")], prefix + files[("train", "labels")])
    test = _read_pair(source, prefix + files[("t10k", "images")], prefix + files[("t10k", "labels")])
    if CLASSES_FILE in names:
        classes = read_classes_file(source, prefix + CLASSES_FILE)
    elif "fashion" in name.lower():
        classes = list(FASHION_MNIST_CLASSES)
    else:
        classes = classes_from_labels(
            np.concatenate([train.labels, test.labels]), source.where(prefix + files[("train", "labels")])
        )
    check_label_range(train.labels, len(classes), source.where(prefix + files[("train", "labels")]))
    check_label_range(test.labels, len(classes), source.where(prefix + files[("t10k", "labels")]))
    return train, test, classes
