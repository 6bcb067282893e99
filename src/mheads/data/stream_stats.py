"""What the streaming loader learns from the training images before training: whether they are in colour,
their side (when ``data.image_size`` is unset), and the normalization statistics, an exact pass over them
(or a seeded sample) through the decoding workers (:mod:`mheads.data.streaming`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from mheads.config import ConfigError
from mheads.core.resources import available_memory, gib
from mheads.core.seeding import Stream, derive_seed
from mheads.data.errors import DataError
from mheads.data.preprocess import Normalizer, NormalizerStats
from mheads.data.stream_failures import fetch_batch
from mheads.data.stream_worker import Examples

if TYPE_CHECKING:
    from mheads.data.streaming import StreamData

__all__ = ["fit_normalizer", "image_channels", "native_size"]

_PROBE = 16  # training images decoded to decide greyscale (1 channel) or colour (3)
_STATS_BATCH = 500  # images per batch of the normalization pass, at most
_STATS_BATCH_BYTES = 64 * 2**20  # ... and at most this many decoded bytes


def _probe(source, indices: np.ndarray):
    """The first readable images among the training examples ``indices[:_PROBE]`` (those the run uses)."""
    for i in indices[:_PROBE]:
        try:
            yield int(i), source.load(int(i), None)[0]
        except DataError:
            continue


def image_channels(source, indices: np.ndarray) -> int:
    """3 when any probed training image is in colour, else 1 (colour images met later are made grey)."""
    return 3 if any(img.mode != "L" for _, img in _probe(source, indices)) else 1


def native_size(source, indices: np.ndarray, where: str) -> int:
    """The side of the first readable training image, which must be square (``data.image_size`` unset)."""
    for i, img in _probe(source, indices):
        w, h = img.size
        if w != h:
            raise DataError(
                f"{source.where(i)}: image is {w}x{h}; set data.image_size to stream images that "
                "are not square (they are resized and centre-cropped to it)"
            )
        return w
    raise DataError(
        f"data.source {where}: none of the first {min(len(indices), _PROBE)} training images is readable"
    )


def _stats_plan(data: StreamData, ds: Examples, mode: str, count: int) -> int:
    """Images per batch of the normalization pass; refuses (``ConfigError`` naming ``data.image_size``) a pass
    whose statistics and batches in flight would not fit the memory there is, before any is allocated."""
    view = ds.view
    image = view.channels * view.size * view.size  # bytes of one decoded uint8 image
    per_batch = max(1, min(_STATS_BATCH, count, _STATS_BATCH_BYTES // image))
    # the batches the workers decode ahead, the one being added and its stacked copy in collate
    batches = per_batch * image * (data.queued_batches + 2)
    # mean_image: an int64 sum per pixel, its float64 mean and the float32 mean image (8 + 8 + 4 bytes)
    state = 20 * image if mode == "mean_image" else 0
    need, avail = batches + state, available_memory("cpu")
    if need > 0.9 * avail:
        size = (
            f"got {view.size}"
            if data.image_size_set
            else f"unset, and the images are {view.size}x{view.size}"
        )
        raise ConfigError(
            f"data.image_size: {size}; the normalization statistics ({mode}) would need about "
            f"{gib(need)} ({data.queued_batches + 2} batches of {per_batch} images in flight"
            f"{', the mean image' if state else ''}) but {gib(avail)} of memory is available; "
            "set a smaller data.image_size (or fewer data.workers)"
        )
    return per_batch


def fit_normalizer(
    data: StreamData, ds: Examples, mode: str, limit: int, seed: int, progress: bool = False
) -> Normalizer:
    """The ``mode`` normalizer of the training images ``ds`` (their evaluation view): exact sums over all of
    them, or over a seeded sample of ``limit``, decoded by ``data``'s workers ("none" needs no statistics: no
    image is decoded, as in ``Normalizer.fit``)."""
    if mode == "none":
        return Normalizer(mode, torch.tensor(0.0), torch.tensor(1.0 / 255.0))
    n = ds.n
    if n <= limit:
        order = np.arange(n)
    else:
        order = np.sort(
            np.random.default_rng(derive_seed(seed, Stream.NORMALIZER)).choice(n, limit, replace=False)
        )
    per_batch = _stats_plan(data, ds, mode, len(order))
    stats = NormalizerStats(ds.view.channels, ds.view.size, ds.view.size, modes=(mode,))
    keys = [[(int(i), -1, 0) for i in order[s : s + per_batch]] for s in range(0, len(order), per_batch)]
    it = data._start(ds, keys)
    for _ in tqdm(
        keys,
        desc="normalization statistics",
        unit="batch",
        disable=not progress,
        leave=False,
    ):
        batch = fetch_batch(it)
        if isinstance(batch, str):
            raise DataError(f"{batch}; {data.advice('train')}")
        stats.update(batch[0])
    return stats.finish(mode)
