"""The Python training API: ``mheads.fit(model, train, test, out=..., settings=...)``.

It trains a TreeNet (or any module, wrapped as an M-member ensemble) on the user's own data and writes the
same run folder as ``mheads train``: everything the command line does (resume, checkpoints, evaluation,
bagging, every loss) goes through the same loop.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.utils.data import IterableDataset

from mheads.config import Config, ConfigError, config_from_settings
from mheads.config.schema import PYTHON_MODEL
from mheads.data import Dataset
from mheads.data.from_torch import check_user_dataset
from mheads.data.loader import TorchData
from mheads.train import loop
from mheads.train.device import resolve_device
from mheads.train.resources import check_model_size
from mheads.tree import TreeNet

__all__ = ["fit"]


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _data(cfg: Config, train: Any, test: Any) -> Dataset | TorchData | None:
    """What the loop reads: None (``cfg.data.source``), a decoded Dataset, or the user's torch Datasets
    (decoded whole or streamed per ``data.loader``)."""
    if train is None or _is_path(train):
        if test is not None:
            raise ConfigError("test: a data path holds its own test split (train/ and test/); give "
                              "test=None, or Datasets for both train and test")
        if train is not None:
            cfg.data.source = str(train)
        return None
    if isinstance(train, Dataset):
        return train
    for name, ds in (("train", train), ("test", test)):
        if ds is None or isinstance(ds, IterableDataset):  # an IterableDataset: check_user_dataset says why
            continue
        if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
            raise ConfigError(f"{name}: got {type(ds).__name__}; expected a map-style torch Dataset of "
                              "(image, label), a data path, or None for the embedded Fashion-MNIST subset")
    check_user_dataset(train, "train")  # one-line errors before training (an empty Dataset, a dict item, ...)
    if test is not None:
        check_user_dataset(test, "test")
    return TorchData(train, test)


def _check_trainable(module: nn.Module, what: str) -> None:
    if not any(p.requires_grad for p in module.parameters()):
        raise ConfigError(f"model: {what} has no trainable parameters; expected a module with parameters to "
                          "train (nn.Conv2d, nn.Linear, ...), not a fixed function")


def _tree(model: nn.Module | TreeNet | Callable[[], nn.Module], cfg: Config, shape: tuple) -> TreeNet:
    m = cfg.model
    if not isinstance(model, nn.Module):  # a factory: its network sized on the meta device before M are built
        name = getattr(model, "__name__", type(model).__name__)
        if check_model_size(cfg, model, resolve_device(cfg.train.device), what=name) is not None:
            with torch.device("meta"):
                _check_trainable(model(), f"the network {name} builds")
    if isinstance(model, TreeNet):
        if m.members != model.num_members:
            m.members = model.num_members  # the TreeNet given decides; the run records what it trains
        split = model.split
        m.split = split if split is None or isinstance(split, (str, list)) else [list(s) for s in split]
        return model
    tree = TreeNet(model, m.members, m.split, seed=cfg.train.seed, init=m.init, reinit=m.reinit,
                   example_input=(1, *shape))
    tree.exec_mode = m.exec
    return tree


def _tree_for_data(model, cfg: Config, data) -> TreeNet:
    return _tree(model, cfg, (data.in_channels, data.image_size, data.image_size))


def fit(model: nn.Module | TreeNet | Callable[[], nn.Module] | str, train: Any = None, test: Any = None, *,
        out: str | os.PathLike, settings: Mapping[str, Any] | None = None, resume: bool = False,
        overwrite: bool = False, progress: bool | None = None) -> dict:
    """Train an ensemble and write the run folder ``out``; returns the final metrics (``metrics.json``).

    Args:
        model: a :class:`TreeNet`; any ``nn.Module`` or a zero-argument factory, wrapped as ``model.members``
            members split at ``model.split`` (None: independent members, each running the module's own
            ``forward``; a module path such as ``"layer2"``: a shared trunk) and initialized per
            ``model.init`` (``"pretrained"`` keeps the module's weights in every member); or a registered
            model name or an import path ``"package.module:function"``, built as the command line builds it.
            train, test: map-style ``torch.utils.data.Dataset`` s of ``(image, label)`` (uint8 or [0, 1] float
            images; one shape, or any sizes when streamed at ``data.image_size``; ``test=None`` evaluates on
            ``train``), or a data path the command line reads
            (its own train and test splits), or None for the embedded Fashion-MNIST subset.
        out: the run folder (written as ``mheads train --out`` writes it).
        settings: dotted config keys, as ``--set`` takes them: ``{"loss.name": "mcl", "loss.k": 1,
            "train.iterations": 300}``.
        resume: continue the run in ``out`` from its newest checkpoint, exactly.
        overwrite: replace a run already in ``out``.
        progress: show a progress bar (default: when stderr is a terminal).
    """
    cfg = config_from_settings(settings)
    if not isinstance(model, (str, nn.Module)) and not callable(model):
        raise ConfigError(f"model: got {type(model).__name__}; expected an nn.Module, a TreeNet, a "
                          "zero-argument function returning an nn.Module, or a registered model name")
    if isinstance(model, nn.Module):
        _check_trainable(model, type(model).__name__)  # before the data is read
    if isinstance(model, str):
        cfg.model.name = model
        cfg.validate()
    dataset = _data(cfg, train, test)
    build = None
    if not isinstance(model, str):
        cfg.model.name = PYTHON_MODEL
        build = partial(_tree_for_data, model, cfg)  # built once the data (and so the image shape) is known
    metrics = loop.fit(cfg, Path(out), resume=resume, overwrite=overwrite, progress=progress, model=build,
                       dataset=dataset)
    return metrics
