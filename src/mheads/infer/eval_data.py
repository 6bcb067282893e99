"""The data ``mheads eval`` scores: the one split it evaluates, read alone from an image folder, a tar of one
or WebDataset shards, so that a bad image in a split it does not score (a corrupt training image when it
scores the test split) never stops it. The split stands in for the other one, which nothing in an evaluation
reads; the run's saved normalizer replaces the statistics training fitted on its training images (a run
without one is read whole, as training read it: :func:`mheads.data.loader.prepare`).

A resident run's split comes from the decoded-data cache training wrote (:mod:`mheads.data.cache`, the same
key) when that cache still verifies against the source: no image is decoded. It cannot hide a corrupt image:
a cache is written only once every image of the source decoded, and a file changed since no longer matches
its fingerprint. Without a valid cache the split is decoded alone."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from mheads.config import Config
from mheads.data import DataError, Dataset
from mheads.data.cache import cached_dataset
from mheads.data.detect import detect_layout
from mheads.data.embedded import EMBEDDED_NAME
from mheads.data.examples import FileExamples
from mheads.data.headers import check_headers
from mheads.data.imagefolder import read_split
from mheads.data.index import ImageIndex, index_source, streamable
from mheads.data.load import dataset_name
from mheads.data.loader import memory_budget, uses_tensors
from mheads.data.resident import prepare_data
from mheads.data.sources import is_archive_name, open_source
from mheads.data.streaming import Sources, prepare_stream

__all__ = ["bad_file_advice", "scored_split"]


def scored_split(cfg: Config, device: torch.device, split: str):
    """``ResidentData`` or ``StreamData`` whose ``split`` ("train" or "test") holds the run's examples of it,
    the only images read; None where the source is not one of those above (read it whole). A bad image file
    of the split, found before or while it is read, is one line naming it and what eval can do about it."""
    source = cfg.data.source
    if source is None or source == EMBEDDED_NAME or uses_tensors(cfg):
        return None
    c = _eval_config(cfg, split)
    if streamable(source):
        index = index_source(source)
        one = index.test if split == "test" else index.train
        _check_files(one, split)
        if _streams(c, one):
            files = FileExamples(one)
            sources = Sources(files, files, list(index.classes), f"{source} ({index.kind})")
            return prepare_stream(c, device, sources=sources, bad_image_advice=bad_file_advice(split))
        return _resident(c, device, split)
    if c.data.loader == "stream" or c.data.image_size is not None or c.data.train_crop != "pad":
        return None  # decoded whole, then streamed to resize it: as training read it
    return _resident(c, device, split)


def _eval_config(cfg: Config, split: str) -> Config:
    """The run's config without what only fits the training images (its normalizer is the saved one) and
    without ``data.on_bad_image: skip`` (eval scores every image, as the resident path always did); when the
    test split is scored, without what selects training examples either (they are not read)."""
    c = copy.deepcopy(cfg)
    d = c.data
    d.normalize = "none"
    # never skip: a streamed image that fails to decode would be replaced by the next one, scored twice
    d.on_bad_image = "stop"
    if split == "test":
        d.train_limit, d.val_fraction, d.bagging = None, 0.0, False
        d.label_split, d.bootstrap_unique = None, None
    return c


def bad_file_advice(split: str) -> str:
    """What eval can do about a bad image file of ``split`` (it cannot skip one: it scores them all)."""
    return f"remove or replace it: mheads eval scores every image of the {split} split"


def _check_files(index: ImageIndex, split: str) -> None:
    bad = check_headers(index, split)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"{bad[0][1]}{more}; {bad_file_advice(split)}")


def _streams(cfg: Config, index: ImageIndex) -> bool:
    """Whether the run's loader streams the split: ``data.loader``, as
    :func:`mheads.data.loader.choose_loader` decides it, on the split's images alone."""
    d = cfg.data
    if d.loader != "auto":
        return d.loader == "stream"
    if d.image_size is not None or d.train_crop != "pad":
        return True
    img, _ = FileExamples(index).load(0, None)
    return len(index) * img.size[0] * img.size[1] * len(img.getbands()) > memory_budget(cfg)


def _resident(cfg: Config, device: torch.device, split: str):
    """The split from the source's valid cache (any layout training read whole), else an image folder's (or
    a tar of one's) split decoded alone; None for another layout without a cache (read it whole)."""
    path = Path(str(cfg.data.source)).expanduser()
    if not (path.is_dir() or (path.is_file() and is_archive_name(path))):
        return None  # load_dataset names what is wrong with it
    cached = cached_dataset(path, cfg.data.cache_dir)
    if cached is not None:  # the arrays training read: both splits decoded (and promoted) as one set
        one, classes = cached.test if split == "test" else cached.train, cached.classes
    else:
        with open_source(path) as src:
            layout = detect_layout(src)
            if layout.format.kind != "image-folder":
                return None
            one, classes = read_split(src, layout.root, split, bad_file_advice(split))
    ds = Dataset(name=dataset_name(path), train=one, test=one, classes=classes)
    return prepare_data(cfg, device, dataset=ds)
