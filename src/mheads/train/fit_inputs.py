"""What ``mheads.fit``'s arguments become before the loop runs: the run's config (``settings``, ``task`` and
``head`` merged and validated) and the data it reads (a data path, a decoded Dataset, or the user's torch
Datasets, from ``DataLoader`` s too: their dataset and batch size)."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from typing import Any, Mapping

from torch.utils.data import DataLoader, IterableDataset, RandomSampler, SequentialSampler, default_collate

from mheads.config import Config, ConfigError, TaskConfig, config_from_settings, task_config_of
from mheads.config.task import PYTHON_TASK, TASK_NAMES
from mheads.data import Dataset
from mheads.data.from_torch import check_user_dataset
from mheads.data.loader import TorchData
from mheads.tasks import Classification, Task

__all__ = ["LOADER_IGNORED", "LOADER_TAKEN", "fit_data", "from_loader", "run_config"]

log = logging.getLogger("mheads")


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def fit_data(cfg: Config, train: Any, test: Any) -> Dataset | TorchData | None:
    """What the loop reads: None (``cfg.data.source``), a decoded Dataset, or the user's torch Datasets
    (decoded whole or streamed per ``data.loader``)."""
    if train is None or _is_path(train):
        if test is not None:
            raise ConfigError(
                "test: a data path holds its own test split (train/ and test/); give "
                "test=None, or Datasets for both train and test"
            )
        if train is not None:
            cfg.data.source = str(train)
        return None
    if isinstance(train, Dataset):
        return train
    for name, ds in (("train", train), ("test", test)):
        if ds is None or isinstance(ds, IterableDataset):  # an IterableDataset: check_user_dataset says why
            continue
        if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
            raise ConfigError(
                f"{name}: got {type(ds).__name__}; expected a map-style torch Dataset of "
                "(image, label), a data path, or None for the embedded Fashion-MNIST subset"
            )
    check_user_dataset(train, "train")  # one-line errors before training (an empty Dataset, a dict item, ...)
    if test is not None:
        check_user_dataset(test, "test")
    return TorchData(train, test)


# What a DataLoader given as train or test hands fit, and what fit does instead of the rest of it.
LOADER_TAKEN = "its dataset and batch_size"
LOADER_IGNORED = (
    "sampler/shuffle/batch_sampler (mheads' own seeded batch plan is what makes resume exact; "
    "bagging and data.train_limit choose examples), collate_fn (items are read one by one; "
    "augment with data.crop_padding / data.flip), num_workers / pin_memory (data.loader, "
    "data.workers), drop_last, generator"
)


def _task_settings(
    task: Any, settings: Mapping[str, Any] | Config | None
) -> Mapping[str, Any] | Config | None:
    """``settings`` with ``task`` in them (before they are validated: a loss may need the task): a name as
    ``task.name``, a Task as its config section (a built-in one by name and options, a user's as
    ``python``)."""
    if task is None:
        return settings
    if isinstance(task, str):
        tc = TaskConfig(task)
    elif isinstance(task, Task):
        tc = task_config_of(task)
    else:
        raise ConfigError(
            f"task: got {type(task).__name__}; expected None, a task name "
            f"({', '.join(TASK_NAMES[:-1])}) or a mheads.tasks.Task"
        )
    if isinstance(settings, Config):
        cfg = copy.deepcopy(settings)
        cfg.task = tc
        return cfg.validate()
    given = dict(settings or {})
    if isinstance(task, str):
        return {"task.name": task, **given}
    extra = {"loss.label_smoothing": task.label_smoothing} if isinstance(task, Classification) else {}
    return {**{f"task.{k}": v for k, v in dataclasses.asdict(tc).items()}, **extra, **given}


def _config(settings: Mapping[str, Any] | Config | None) -> tuple[Config, set[str] | None]:
    """The run's config and the keys ``settings`` names (None for a Config, which names every value)."""
    if isinstance(settings, Config):
        return copy.deepcopy(settings).validate(), None  # fit writes into its config: never the caller's
    return config_from_settings(settings), set(settings or ())


def from_loader(name: str, data: Any, cfg: Config, named: set[str] | None) -> Any:
    """The Dataset under a DataLoader (its batch size into the config unless the settings name one); any other
    ``data`` as it is."""
    if not isinstance(data, DataLoader):
        return data
    key = "batch_size" if name == "train" else "eval_batch_size"
    size = data.batch_size  # None where a batch_sampler decides the batches
    if size is not None and named is not None and f"train.{key}" not in named:
        setattr(cfg.train, key, size)
    used = getattr(cfg.train, key)
    custom = [
        what
        for what, odd in (
            ("a collate_fn", data.collate_fn is not default_collate),
            ("a sampler", not isinstance(data.sampler, (SequentialSampler, RandomSampler))),
            ("a batch_sampler", data.batch_size is None),
        )
        if odd
    ]
    log_at = logging.WARNING if custom else logging.INFO
    log.log(
        log_at,
        "%s: from the DataLoader, %s (train.%s %d%s); ignored: %s%s",
        name,
        LOADER_TAKEN,
        key,
        used,
        "" if size == used else f", not its {size}: the settings name one",
        LOADER_IGNORED,
        f"; its own {', '.join(custom)} is not applied" if custom else "",
    )
    return data.dataset


def run_config(
    settings: Mapping[str, Any] | Config | None, task: Any, head: str | None
) -> tuple[Config, set[str] | None, Task | None]:
    """``(cfg, named, user_task)``: the run's config from ``settings``, ``task`` and ``head``; the keys the
    settings name (None for a Config, which names every value: fit must not override them); a user's Task
    object (``task.name: python``), else None."""
    if settings is not None and not isinstance(settings, (Mapping, Config)):
        raise ConfigError(
            f"settings: got {type(settings).__name__}; expected a mapping of dotted keys to "
            "values or a mheads.Config"
        )
    named = None if isinstance(settings, Config) else set(settings or ())
    cfg, _ = _config(_head_settings(head, _task_settings(task, settings)))
    user_task = task if isinstance(task, Task) and cfg.task.name == PYTHON_TASK else None
    return cfg, named, user_task


def _head_settings(
    head: str | None, settings: Mapping[str, Any] | Config | None
) -> Mapping[str, Any] | Config | None:
    """``settings`` with fit's ``head`` argument as ``model.head`` (before they are validated: ``model.pool``
    needs it); settings naming another ``model.head`` are refused."""
    if head is None:
        return settings
    if isinstance(settings, Config):
        cfg = copy.deepcopy(settings)
        cfg.model.head = head
        return cfg.validate()
    given = dict(settings or {})
    if given.get("model.head", head) != head:
        raise ConfigError(
            f"head: got {head!r}, and settings name model.head {given['model.head']!r}; give one of them"
        )
    return {**given, "model.head": head}
