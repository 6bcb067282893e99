"""Writing data sets for streaming: WebDataset-layout tar shards from any indexed set, and synthetic image
folders of varied-size JPEGs (for benchmarks, smoke runs and tests of the streaming path).

Shards: ``<out>/train-000000.tar``, ... and ``test-000000.tar``, ..., each sample two members, ``<key>.<ext>``
(the image file's bytes, unchanged) and ``<key>.cls`` (the label as decimal text), plus ``classes.txt``; the
streaming loader reads them back with example ``i`` unchanged (same images, same order).
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

from mheads.core.atomic import OutputError, atomic_write_text, os_reason
from mheads.data.errors import DataError
from mheads.data.index import ImageIndex, index_source

__all__ = ["write_shards", "write_varied_folder"]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _write_split(index: ImageIndex, out: Path, split: str, per_shard: int) -> list[Path]:
    paths = []
    for s, start in enumerate(range(0, len(index), per_shard)):
        path = out / f"{split}-{s:06d}.tar"
        tmp = path.with_name(path.name + ".tmp")
        try:
            with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
                for i in range(start, min(start + per_shard, len(index))):
                    # Member names are the example number and the image's suffix only: no file name of the
                    # source reaches a shard.
                    ext = PurePosixPath(index.name(i)).suffix.lower().lstrip(".") or "jpg"
                    key = f"{i:09d}"
                    _add(tar, f"{key}.{ext}", index.read(i))
                    _add(tar, f"{key}.cls", str(int(index.labels[i])).encode())
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):
                raise OutputError(f"{tmp}: cannot write the shard ({os_reason(exc)})") from exc
            raise
        paths.append(path)
    return paths


def _check_out(out: Path) -> None:
    """``out`` must be a new or empty folder, or one holding no .tar files (the reader would take old shards
    for more examples)."""
    if out.exists() and not out.is_dir():
        raise DataError(
            f"{out}: exists and is not a folder; expected the path of a new or empty folder to "
            "write the shards into"
        )
    if out.is_dir() and any(p.suffix == ".tar" for p in out.iterdir()):
        raise DataError(
            f"{out}: already holds .tar files; shards left from another write would be read as "
            "more examples: give an empty or new folder"
        )


def write_shards(source: str | os.PathLike, out: str | os.PathLike, per_shard: int = 10000) -> list[Path]:
    """Write the streamable data set ``source`` as shards in the folder ``out``; returns the shard paths."""
    if not isinstance(per_shard, int) or per_shard < 1:
        raise ValueError(f"per_shard: got {per_shard!r}; expected an integer >= 1")
    out = Path(out)
    _check_out(out)  # before indexing, which can take minutes
    index = index_source(source)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{out}: cannot create the folder ({os_reason(exc)}); expected a writable path for a new folder"
        ) from exc
    paths = _write_split(index.train, out, "train", per_shard) + _write_split(
        index.test, out, "test", per_shard
    )
    try:
        atomic_write_text(out / "classes.txt", "\n".join(index.classes) + "\n")
    except OSError as exc:
        raise OutputError(f"{out / 'classes.txt'}: cannot write ({os_reason(exc)})") from exc
    return paths


def _image(label: int, num_classes: int, rng: np.random.Generator, sizes: tuple[int, int]) -> bytes:
    from PIL import Image

    w, h = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, size=2))
    hue = label / num_classes
    base = np.array(
        [np.cos(2 * np.pi * hue), np.cos(2 * np.pi * (hue + 1 / 3)), np.cos(2 * np.pi * (hue + 2 / 3))]
    )
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = np.sin((xx * np.cos(np.pi * hue) + yy * np.sin(np.pi * hue)) * (0.2 + 0.3 * hue))
    pixels = 128 + 60 * base[None, None, :] + 40 * stripes[..., None] + rng.normal(0, 25, (h, w, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def write_varied_folder(
    root: str | os.PathLike,
    train: int,
    test: int,
    num_classes: int = 10,
    *,
    sizes: tuple[int, int] = (48, 96),
    seed: int = 0,
) -> Path:
    """An ImageNet-layout folder ``root/{train,test}/class_<k>/<n>.jpg`` of ``train`` and ``test`` JPEGs whose
    sides are drawn from ``sizes`` (any aspect); each class has its own colour and stripe direction under
    noise, so a network can learn it. Deterministic in ``seed``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        for c in range(num_classes):
            (root / split / f"class_{c:03d}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = i % num_classes
            (root / split / f"class_{label:03d}" / f"{i // num_classes}.jpg").write_bytes(
                _image(label, num_classes, rng, sizes)
            )
    return root
