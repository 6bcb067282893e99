"""Where streamed examples come from (an index of image files, or a user's torch Datasets) and which of them a
run uses, as positions into them (:mod:`mheads.data.streaming` decodes them per batch)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from mheads.config import DataConfig
from mheads.data.errors import DataError
from mheads.data.examples import FileExamples, TorchExamples
from mheads.data.from_torch import class_names
from mheads.data.headers import check_headers
from mheads.data.index import StreamIndex
from mheads.data.subsets import class_ids, keep_classes, stratified_limit, val_split
from mheads.ensemble.strategies import bootstrap_unique

__all__ = ["Chosen", "Sources", "choose_examples", "dataset_sources", "index_sources", "run_labels"]

log = logging.getLogger("mheads.data.streaming")  # the streaming loader's messages, as before the split
_LONG_SCAN = 10_000  # reading more labels than this before training is announced


@dataclass(frozen=True, eq=False)
class Sources:
    """Where the streamed examples come from: the train and test examples, the source's class names, and
    the source as messages name it."""

    train: FileExamples | TorchExamples
    test: FileExamples | TorchExamples
    classes: list[str]
    where: str


def index_sources(index: StreamIndex, source: str, on_bad_image: str, progress: bool = False) -> Sources:
    """The files of ``index`` (``source``: ``data.source``), every header checked first: a bad file stops
    the run naming it (``on_bad_image: stop``), or is logged and skipped where drawn (``skip``)."""
    for split, idx in (("train", index.train), ("test", index.test)):
        bad = check_headers(idx, split, progress)
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            if on_bad_image == "stop":
                raise DataError(f"{bad[0][1]}{more}; remove or replace it, or set data.on_bad_image: skip")
            log.warning("%s%s: skipped where drawn (data.on_bad_image: skip)", bad[0][1], more)
    return Sources(
        FileExamples(index.train), FileExamples(index.test), list(index.classes), f"{source} ({index.kind})"
    )


def dataset_sources(train, test=None, progress: bool = False) -> Sources:
    """A user's map-style torch Datasets of ``(image, label)`` (``test=None``: evaluate on ``train``), with
    their own class names when they have them (torchvision's do; a label outside them stops the run where
    it is read); otherwise one pass over the labels, announced when long."""
    train_src = TorchExamples(train, "train")
    test_src = TorchExamples(test, "test") if test is not None else train_src
    if getattr(train, "classes", None) is not None:
        classes = [str(c) for c in train.classes]
    else:
        if getattr(train, "targets", None) is None and len(train_src) > _LONG_SCAN:
            log.info(
                "reading the labels of all %d train examples to count the classes (give the "
                "Dataset `classes` and `targets` attributes to skip this pass)",
                len(train_src),
            )
        classes = class_names(train, train_src.labels(progress))
    return Sources(train_src, test_src, classes, "python Datasets")


@dataclass(frozen=True, eq=False)
class Chosen:
    """The examples a run uses, as positions into its sources; ``classes``: the run's, ``relabel``: the
    source's class index to the run's (-1: left out; None: every class kept as it is)."""

    train: np.ndarray
    test: np.ndarray
    classes: list[str]
    val: np.ndarray | None = None
    ood: np.ndarray | None = None
    relabel: np.ndarray | None = None


def choose_examples(sources: Sources, data: DataConfig, seed: int) -> Chosen:
    """The examples ``data`` keeps, in the resident loader's order of steps: ``data.classes`` (the open
    set), the limits, the validation split, then bagging's ``bootstrap_unique``."""
    train_src, test_src = sources.train, sources.test
    chosen = Chosen(np.arange(len(train_src)), np.arange(len(test_src)), sources.classes)
    if data.classes is not None:
        chosen = _only_classes(sources, data.classes, data.test_limit, seed)
    train, test = chosen.train, chosen.test
    if data.train_limit is not None:
        train = train[stratified_limit(train_src.labels()[train], data.train_limit, seed, "train")]
    if data.test_limit is not None:
        test = test[stratified_limit(test_src.labels()[test], data.test_limit, seed, "test")]
    chosen = replace(chosen, train=train, test=test)
    if data.val_fraction:
        keep, held = val_split(len(chosen.train), data.val_fraction, seed)
        chosen = replace(chosen, train=chosen.train[keep], val=chosen.train[held])
    if data.bootstrap_unique is not None:  # bagging's sample of this N, its duplicates dropped
        keep = bootstrap_unique(len(chosen.train), data.bootstrap_unique, seed).numpy()
        chosen = replace(chosen, train=chosen.train[keep])
    return chosen


def _only_classes(sources: Sources, requested: list, test_limit: int | None, seed: int) -> Chosen:
    """``data.classes``: the examples of the ``requested`` classes, renumbered 0.. in their order; the test
    examples of the others become the open set (``ood``, a stratified ``test_limit`` of them)."""
    classes = sources.classes
    ids = class_ids(requested, classes)
    train, _ = keep_classes(sources.train.labels(), ids, len(classes))
    test, _ = keep_classes(sources.test.labels(), ids, len(classes))
    ood = np.setdiff1d(np.arange(len(sources.test)), test)
    ood = ood[stratified_limit(sources.test.labels()[ood], test_limit, seed, "ood")]
    relabel = np.full(len(classes), -1, dtype=np.int64)
    relabel[ids] = np.arange(len(ids))
    return Chosen(train, test, [classes[i] for i in ids], ood=ood, relabel=relabel)


def run_labels(sources: Sources, chosen: Chosen) -> np.ndarray:
    """The class indices of the chosen training examples, in the run's numbering."""
    labels = sources.train.labels()[chosen.train]
    return labels if chosen.relabel is None else chosen.relabel[labels]
