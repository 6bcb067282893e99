"""How training data reaches the model (``data.loader``): decoded whole onto the training device
(:mod:`mheads.data.resident`) or decoded per batch by worker processes (:mod:`mheads.data.streaming`).

``auto`` streams when the source can be streamed (an image folder, a plain ``.tar`` of one, WebDataset shards,
or a user's torch Datasets) and either the images must be resized (``data.image_size``, ``data.train_crop:
random_resized``) or the decoded set would exceed ``data.memory_budget_mb`` (default: half the machine's RAM);
otherwise the data is resident, which is what every run before streaming existed used. A user's Datasets of
inputs that are not square images (or of any task but classification) are read as tensors by the same rule:
whole (:mod:`mheads.data.tensors`) or item by item per batch (:mod:`mheads.data.dataset_stream`), the same
batches either way.

A user's Datasets (``mheads.fit``) are sized from their ``len()`` and first example before any other is read:
decoded whole they must fit the memory there is, streamed their per-example bookkeeping (indices, labels,
epoch orders: about ``STREAM_BYTES_PER_EXAMPLE``) must; a set too large for either is refused, saying which,
and the choice is logged.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from mheads.config import Config, ConfigError
from mheads.core.resources import available_memory, gib
from mheads.data.dataset import Dataset
from mheads.data.dataset_stream import example_bytes, stream_from_config
from mheads.data.errors import DataError
from mheads.data.examples import FileExamples
from mheads.data.from_torch import _image, check_user_dataset, from_torch_datasets
from mheads.data.index import index_source, streamable
from mheads.data.load import load_dataset
from mheads.data.resident import prepare_data
from mheads.data.sources_task import read_task_source, task_source_kind
from mheads.data.tensor_data import prepare_tensors
from mheads.data.tensors import is_image_input

__all__ = [
    "STREAM_BYTES_PER_EXAMPLE",
    "TorchData",
    "choose_loader",
    "memory_budget",
    "prepare",
    "uses_tensors",
]

log = logging.getLogger(__name__)

# streamed: an int64 index, an int64 label and two epochs' int64 orders per training example, with slack
STREAM_BYTES_PER_EXAMPLE = 48


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


def _torch_sizes(data: TorchData) -> tuple[int, int, int]:
    """``(train examples, test examples, bytes of train[0] decoded)``, each Dataset checked first (one-line
    errors for an empty or iterable Dataset, items that are not pairs, images that are paths)."""
    n_train, first = check_user_dataset(data.train, "train")
    n_test = check_user_dataset(data.test, "test")[0] if data.test is not None else 0
    return n_train, n_test, int(_image(first[0], "train[0]").nbytes)


def _check_torch_fits(cfg: Config, kind: str, data: TorchData) -> None:
    """Refuse user Datasets too large to hold as ``kind`` loads them, before reading more than one example."""
    n_train, n_test, image = _torch_sizes(data)
    avail = available_memory("cpu")
    if kind == "resident":
        need = 2 * (n_train + n_test) * image  # the decoded images, then stacked into one array
        log.info(
            "python Datasets: %d train / %d test examples of %d bytes read whole into memory (%s)",
            n_train,
            n_test,
            image,
            gib(need // 2),
        )
        if need > 0.9 * avail:
            raise ConfigError(
                f"data.loader: got {cfg.data.loader}; reading the {n_train} train and {n_test} "
                f"test images whole needs about {gib(need)} but {gib(avail)} of memory is "
                "available; set data.loader: stream"
            )
        return
    need = (n_train + n_test) * STREAM_BYTES_PER_EXAMPLE
    log.info(
        "python Datasets: %d train / %d test examples streamed (decoded whole: %s)",
        n_train,
        n_test,
        gib((n_train + n_test) * image),
    )
    if need > 0.9 * avail:
        raise DataError(
            f"train: {n_train} examples (test: {n_test}); streaming keeps about "
            f"{STREAM_BYTES_PER_EXAMPLE} bytes per example (indices, labels, epoch orders): "
            f"{gib(need)}, but {gib(avail)} of memory is available; train on a part of it "
            "(torch.utils.data.Subset)"
        )


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
        n_train, n_test, image = _torch_sizes(dataset)
        return "stream" if (n_train + n_test) * image > memory_budget(cfg) else "resident"
    if resize:  # only the streaming loader resizes; a source it cannot index is decoded, then streamed
        return "stream"
    if d.source is None or not streamable(d.source):
        return "resident"
    index = index_source(d.source)
    img, _ = FileExamples(index.train).load(0, None)
    decoded = (len(index.train) + len(index.test)) * img.size[0] * img.size[1] * len(img.getbands())
    return "stream" if decoded > memory_budget(cfg) else "resident"


def uses_tensors(cfg: Config, dataset: Dataset | TorchData | None = None) -> bool:
    """Whether the data is read as tensors of any shape (:mod:`mheads.data.tensors`): any task but
    classification, a table / ``.npz`` / mask-folder source, or a user's classification Datasets whose inputs
    are not square images (and no resizing asked for; ``data.loader: stream`` streams them too)."""
    if not cfg.task.is_classification or task_source_kind(cfg.data.source) is not None:
        return True
    if not isinstance(dataset, TorchData) or cfg.data.image_size is not None:
        return False
    return not is_image_input(check_user_dataset(dataset.train, "train")[1][0])


def _streams_tensors(cfg: Config, data: TorchData) -> bool:
    """Whether a user's Datasets read as tensors are streamed (:mod:`mheads.data.dataset_stream`):
    ``data.loader: stream``, or ``auto`` when their first examples times their lengths exceed
    ``data.memory_budget_mb``."""
    if cfg.data.loader != "auto":
        return cfg.data.loader == "stream"
    n_train = check_user_dataset(data.train, "train")[0]
    size = n_train * example_bytes(data.train, "train")
    if data.test is not None:
        size += check_user_dataset(data.test, "test")[0] * example_bytes(data.test, "test")
    return size > memory_budget(cfg)


def prepare(
    cfg: Config, device: torch.device, *, dataset: Dataset | TorchData | None = None, progress: bool = False
):
    """The training data for ``cfg`` on ``device``: ``ResidentData`` or ``StreamData`` for images,
    ``TensorData`` or ``DatasetStream`` for inputs and targets of any shape (:func:`uses_tensors`)."""
    if uses_tensors(cfg, dataset):
        if isinstance(dataset, Dataset):
            raise ConfigError(
                f"task.name: got {cfg.task.name!r}; a decoded image Dataset holds class "
                "labels: give (input, target) torch Datasets for this task"
            )
        if isinstance(dataset, TorchData):
            if _streams_tensors(cfg, dataset):
                return stream_from_config(cfg, device, dataset.train, dataset.test)
            return prepare_tensors(cfg, device, dataset.train, dataset.test)
        if cfg.data.loader == "stream":
            raise ConfigError(
                f"data.loader: got 'stream' for data.source {cfg.data.source}, a table, .npz or mask "
                "folder, which is read whole; expected auto or resident (or stream it as a torch Dataset "
                "through mheads.fit)"
            )
        return prepare_tensors(cfg, device, *read_task_source(cfg), source=str(cfg.data.source))
    kind = choose_loader(cfg, dataset)
    if isinstance(dataset, TorchData):
        _check_torch_fits(cfg, kind, dataset)
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
        return prepare_stream(
            cfg,
            device,
            train=_SplitItems(ds.train, ds.classes),
            test=_SplitItems(ds.test, ds.classes),
            progress=progress,
        )
    return prepare_stream(cfg, device, index_source(cfg.data.source), progress=progress)
