"""Which examples a run uses: a subset of the classes (``data.classes``, the open-set protocol) and a held-out
validation split carved from the training set (``data.val_fraction``), both as index arrays, the same for the
resident and the streaming loader."""

from __future__ import annotations

import numpy as np
import torch

from mheads.core.checks import check_number
from mheads.core.seeding import Stream, derived_generator
from mheads.data.errors import DataError

__all__ = ["class_ids", "keep_classes", "val_split"]


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
