"""Writers of tiny data sets in every supported on-disk format, for the reader tests."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def random_images(n: int, c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


def balanced_labels(n: int, num_classes: int) -> np.ndarray:
    return (np.arange(n) % num_classes).astype(np.int64)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_folder(folder: Path, train, test, gz: bool = False, dotted: bool = False) -> None:
    """train, test: (images (N, H, W), labels (N,)) pairs written as the four MNIST files."""
    folder.mkdir(parents=True, exist_ok=True)
    sep = "." if dotted else "-"
    for split, (images, labels) in (("train", train), ("t10k", test)):
        for kind, dim, array in (("images", 3, images), ("labels", 1, labels)):
            data = idx_bytes(np.asarray(array, dtype=np.uint8))
            name = f"{split}-{kind}{sep}idx{dim}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)


def cifar_python_batch(
    images: np.ndarray, labels: np.ndarray, label_key: str, protocol: int = 2, bytes_keys: bool = False
) -> bytes:
    batch = {
        "batch_label": "testing batch 1 of 1",
        label_key: [int(x) for x in labels],
        "data": images.reshape(len(images), -1),
        "filenames": [f"img_{i}.png" for i in range(len(images))],
    }
    if bytes_keys:
        batch = {k.encode(): v for k, v in batch.items()}
    return pickle.dumps(batch, protocol=protocol)


def write_cifar10_python(
    folder: Path, train, test, classes, protocol: int = 2, batches: int = 2, bytes_keys: bool = False
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = train
    for b, (im, lb) in enumerate(
        zip(np.array_split(images, batches), np.array_split(labels, batches)), start=1
    ):
        (folder / f"data_batch_{b}").write_bytes(cifar_python_batch(im, lb, "labels", protocol, bytes_keys))
    (folder / "test_batch").write_bytes(cifar_python_batch(*test, "labels", protocol, bytes_keys))
    meta = {"label_names": list(classes), "num_cases_per_batch": len(labels) // batches, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    (folder / "readme.html").write_text("<html>CIFAR</html>")


def write_cifar100_python(folder: Path, train, test, classes, protocol: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in (("train", train), ("test", test)):
        batch = pickle.loads(cifar_python_batch(images, labels, "fine_labels", protocol))
        batch["coarse_labels"] = [int(x) // 5 for x in labels]
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    meta = {"fine_label_names": list(classes), "coarse_label_names": ["c0", "c1"]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=protocol))


def cifar_binary_records(images: np.ndarray, labels: np.ndarray, cifar100: bool) -> bytes:
    n = len(images)
    label_cols = [labels // 5, labels] if cifar100 else [labels]
    rows = np.concatenate([np.stack(label_cols, 1).astype(np.uint8), images.reshape(n, -1)], axis=1)
    return rows.tobytes()


def write_cifar10_binary(folder: Path, train, test, classes, batches: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = train
    for b, (im, lb) in enumerate(
        zip(np.array_split(images, batches), np.array_split(labels, batches)), start=1
    ):
        (folder / f"data_batch_{b}.bin").write_bytes(cifar_binary_records(im, lb, False))
    (folder / "test_batch.bin").write_bytes(cifar_binary_records(*test, False))
    (folder / "batches.meta.txt").write_text("\n".join(classes) + "\n\n")


def write_cifar100_binary(folder: Path, train, test, classes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.bin").write_bytes(cifar_binary_records(*train, True))
    (folder / "test.bin").write_bytes(cifar_binary_records(*test, True))
    (folder / "fine_label_names.txt").write_text("\n".join(classes) + "\n")
    (folder / "coarse_label_names.txt").write_text("c0\nc1\n")


def image_bytes(pixels: np.ndarray, fmt: str) -> bytes:
    """pixels: (C, H, W) uint8 with C in {1, 3}."""
    array = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def write_image_folder(
    root: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], classes, fmt: str = "PNG"
):
    """splits: {"train": (images (N, C, H, W), labels (N,)), "test": ...}; files numbered per class."""
    suffix = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp"}[fmt]
    for split, (images, labels) in splits.items():
        counters: dict[int, int] = {}
        for pixels, label in zip(images, labels):
            number = counters.get(int(label), 0)
            counters[int(label)] = number + 1
            path = root / split / classes[int(label)] / f"{number}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image_bytes(pixels, fmt))


def make_tar(folder: Path, archive: Path, mode: str = "w:gz", arcname: str = "") -> Path:
    with tarfile.open(archive, mode) as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(Path(arcname) / path.relative_to(folder)), recursive=False)
    return archive


def _py2_str(raw: bytes) -> bytes:
    if len(raw) < 256:
        return pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw
    return pickle.BINSTRING + struct.pack("<i", len(raw)) + raw


def _py2_int(value: int) -> bytes:
    return pickle.BININT + struct.pack("<i", value)


def py2_cifar_batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    """A batch pickled as Python 2 / numpy 1.x did for the original CIFAR files.

    Opcodes written by hand: 8-bit strings (BINSTRING) for keys and pixel bytes, and numpy's old
    module name numpy.core.multiarray, neither of which Python 3 with numpy 2 produces.
    """
    data = images.reshape(len(images), -1)
    dtype = (
        pickle.GLOBAL + b"numpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + pickle.TUPLE3
        + pickle.REDUCE + pickle.MARK + _py2_int(3) + _py2_str(b"|") + pickle.NONE * 3
        + _py2_int(-1) + _py2_int(-1) + _py2_int(0) + pickle.TUPLE + pickle.BUILD
    )  # fmt: skip
    array = (
        pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n" + pickle.GLOBAL + b"numpy\nndarray\n"
        + _py2_int(0) + pickle.TUPLE1 + _py2_str(b"b") + pickle.TUPLE3 + pickle.REDUCE
        + pickle.MARK + _py2_int(1) + _py2_int(data.shape[0]) + _py2_int(data.shape[1]) + pickle.TUPLE2
        + dtype + pickle.NEWFALSE + _py2_str(data.tobytes()) + pickle.TUPLE + pickle.BUILD
    )  # fmt: skip
    label_list = pickle.EMPTY_LIST + pickle.MARK + b"".join(_py2_int(int(x)) for x in labels) + pickle.APPENDS
    return (
        pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.MARK
        + _py2_str(b"data") + array + _py2_str(b"labels") + label_list
        + pickle.SETITEMS + pickle.STOP
    )  # fmt: skip
