"""Per-member example weights ``(M, N)``: which training examples each member learns from, and how often.
Bagging gives each member its own bootstrap counts (section 4); ``data.label_split`` makes member m a
specialist of its classes (weight 0 on every other class). Both loaders, resident and streaming, build them
here from the examples a run keeps."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mheads.config import ConfigError
from mheads.ensemble.strategies import bootstrap_counts

__all__ = ["member_weights", "specialist_mask"]


def specialist_mask(label_split: list, members: int, num_classes: int) -> torch.Tensor:
    """``(M, K)`` float: 1 where member m trains on class k (``label_split[m]`` lists its classes); a class
    outside 0..K-1 is a ``ConfigError`` naming ``data.label_split[m]``."""
    mask = torch.zeros(members, num_classes)
    for m, labels in enumerate(label_split):
        for c in labels:
            if not isinstance(c, int) or not 0 <= c < num_classes:
                raise ConfigError(f"data.label_split[{m}]: got label {c!r}; expected 0..{num_classes - 1}")
            mask[m, c] = 1.0
    return mask


def member_weights(
    n: int,
    num_classes: int,
    members: int,
    seed: int,
    bagging: bool,
    label_split: list | None,
    *,
    labels: Callable[[], np.ndarray],
) -> torch.Tensor | None:
    """``(M, n)`` float weights of the ``n`` training examples: bootstrap counts seeded by ``seed`` with
    ``bagging``, times the specialists' mask with ``label_split``; None (every example weighs 1) with
    neither. On the CPU. ``labels()`` gives the examples' class indices ``(n,)`` in the run's numbering; it
    is called only with ``label_split``, once its classes are checked (a streamed source may have to read
    every label to answer)."""
    weights = None
    if bagging:
        weights = bootstrap_counts(n, members, seed).float()
    if label_split is not None:
        mask = specialist_mask(label_split, members, num_classes)
        spec = mask[:, torch.as_tensor(labels())]
        weights = spec if weights is None else weights * spec
    return weights
