"""Which examples a run uses: a subset of the classes (``data.classes``, the open-set protocol), a seeded
class-stratified subset of a split (``data.train_limit`` / ``test_limit``) and a held-out validation split
carved from the training set (``data.val_fraction``), all as index arrays, the same for the resident and the
streaming loader."""

from __future__ import annotations

import numpy as np
import torch

from mheads.core.checks import check_number
from mheads.core.seeding import Stream, derived_generator
from mheads.data.errors import DataError

__all__ = ["class_ids", "keep_classes", "stratified_limit", "val_split"]


def class_ids(requested: list, classes: list[str]) -> list[int]:
    """``data.classes`` (indices or names of the source's classes) as indices, in the order given."""
    ids = []
    for c in requested:
        if isinstance(c, str):
            if c not in classes:
                raise DataError(f"data.classes: got {c!r}; expected a class of the data set: {classes}")
            ids.append(classes.index(c))
        elif not 0 <= c < len(classes):
            raise DataError(f"data.classes: got {c}; expected class indices 0..{len(classes) - 1}")
        else:
            ids.append(int(c))
    if len(set(ids)) != len(ids):
        raise DataError(f"data.classes: {requested} names a class twice")
    return ids


def keep_classes(labels: np.ndarray, ids: list[int], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the examples whose label is in ``ids``, their labels renumbered 0..len(ids)-1 in ``ids``'
    order)."""
    relabel = np.full(num_classes, -1, dtype=np.int64)
    relabel[ids] = np.arange(len(ids))
    new = relabel[np.asarray(labels, dtype=np.int64)]
    kept = np.flatnonzero(new >= 0)
    return kept, new[kept]


def val_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training positions, validation positions) of ``n`` examples, each in increasing order: a seeded
    ``round(fraction * n)`` of them held out (none for fraction 0)."""
    check_number("data.val_fraction", fraction, 0.0, 0.5)
    n_val = int(round(fraction * n))
    if n_val == 0:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    if n_val >= n:
        raise DataError(f"data.val_fraction: {fraction} of {n} training examples leaves none to train on")
    perm = torch.randperm(n, generator=derived_generator(seed, Stream.VAL_SPLIT)).numpy()
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def stratified_limit(labels: np.ndarray, limit: int | None, seed: int, split: str) -> np.ndarray:
    """Positions (increasing) of a seeded, class-stratified subset of ``limit`` examples: each class keeps its
    share of the split (``floor(limit * n_c / N)``, the remaining places to the classes with the largest
    fractional shares, lower class first on ties), drawn at random within the class. All positions when
    ``limit`` is None or not below the split's size. (Taking the first ``limit`` files of a class-sorted image
    folder would keep one or two classes.)"""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    exact = limit * counts / n
    quota = np.floor(exact).astype(np.int64)
    order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - quota[i]), i))
    for i in order[: limit - int(quota.sum())]:
        quota[i] += 1
    gen = derived_generator(seed, Stream.SUBSET, split)
    keep = []
    for c, q in zip(classes, quota):
        members = np.flatnonzero(labels == c)
        pick = torch.randperm(len(members), generator=gen)[: int(q)].numpy()
        keep.append(members[pick])
    return np.sort(np.concatenate(keep))
