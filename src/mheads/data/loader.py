"""How training data reaches the model (``data.loader``): decoded whole onto the training device
(:mod:`mheads.data.resident`) or decoded per batch by worker processes (:mod:`mheads.data.streaming`).

``auto`` streams when the source can be streamed (an image folder, a plain ``.tar`` of one, WebDataset shards,
or a user's torch Datasets) and either the images must be resized (``data.image_size``, ``data.train_crop:
random_resized``) or the decoded set would exceed ``data.memory_budget_mb`` (default: half the machine's RAM);
otherwise the data is resident, which is what every run before streaming existed used.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from mheads.config import Config
from mheads.data.dataset import Dataset
from mheads.data.examples import FileExamples
from mheads.data.from_torch import from_torch_datasets
from mheads.data.index import index_source, streamable
from mheads.data.load import load_dataset
from mheads.data.resident import prepare_data

__all__ = ["TorchData", "choose_loader", "memory_budget", "prepare"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TorchData:
    """A user's map-style Datasets of ``(image, label)``, not read yet (``mheads.fit``)."""

    train: Any
    test: Any = None


class _SplitItems:
    """An in-memory split seen as a map-style Dataset (to stream a decoded set at another image size)."""

    def __init__(self, split, classes):
        self.split, self.classes = split, classes
        self.targets = split.labels

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return self.split.images[i], int(self.split.labels[i])


def memory_budget(cfg: Config) -> int:
    """Bytes of decoded images above which ``loader: auto`` streams."""
    if cfg.data.memory_budget_mb is not None:
        return cfg.data.memory_budget_mb * 2**20
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _first_image_bytes(ds) -> int:
    x = ds[0][0]
    if hasattr(x, "getbands"):
        return x.size[0] * x.size[1] * len(x.getbands())
    return int(torch.as_tensor(x).numel())


def choose_loader(cfg: Config, dataset: Dataset | TorchData | None = None) -> str:
    """``"resident"`` or ``"stream"`` for this config and data (see the module docstring)."""
    d = cfg.data
    resize = d.image_size is not None or d.train_crop != "pad"
    if d.loader != "auto":
        return d.loader
    if isinstance(dataset, Dataset):
        return "stream" if resize else "resident"
    if isinstance(dataset, TorchData):
        if resize:
            return "stream"
        n = len(dataset.train) + (len(dataset.test) if dataset.test is not None else 0)
        return "stream" if n * _first_image_bytes(dataset.train) > memory_budget(cfg) else "resident"
    if resize:  # only the streaming loader resizes; a source it cannot index is decoded, then streamed
        return "stream"
    if not streamable(d.source):
        return "resident"
    index = index_source(d.source)
    img, _ = FileExamples(index.train).load(0, None)
    decoded = (len(index.train) + len(index.test)) * img.size[0] * img.size[1] * len(img.getbands())
    return "stream" if decoded > memory_budget(cfg) else "resident"


def prepare(
    cfg: Config, device: torch.device, *, dataset: Dataset | TorchData | None = None, progress: bool = False
):
    """The training data for ``cfg`` on ``device``: ``ResidentData`` or ``StreamData``."""
    kind = choose_loader(cfg, dataset)
    if kind == "resident":
        if isinstance(dataset, TorchData):
            dataset = from_torch_datasets(dataset.train, dataset.test, progress=progress)
        return prepare_data(cfg, device, dataset=dataset)
    from mheads.data.streaming import prepare_stream

    if isinstance(dataset, TorchData):
        return prepare_stream(cfg, device, train=dataset.train, test=dataset.test, progress=progress)
    if isinstance(dataset, Dataset):
        return prepare_stream(
            cfg,
            device,
            train=_SplitItems(dataset.train, dataset.classes),
            test=_SplitItems(dataset.test, dataset.classes),
            progress=progress,
        )
    if cfg.data.source is None or not streamable(cfg.data.source):
        # the embedded subset, or a format read whole (idx, CIFAR batches, a compressed archive): decoded
        # once, then streamed from memory through the workers (e.g. to resize it)
        ds = load_dataset(cfg.data.source, cache_dir=cfg.data.cache_dir)
        return prepare_stream(cfg, device, train=_SplitItems(ds.train, ds.classes),
                              test=_SplitItems(ds.test, ds.classes), progress=progress)
    return prepare_stream(cfg, device, index_source(cfg.data.source), progress=progress)
