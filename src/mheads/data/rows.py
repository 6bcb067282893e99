"""Which examples of a user's ``(input, target)`` splits a run uses (issue 32), as positions into them: the
same steps, in the same order, for the resident tensors (:mod:`mheads.data.tensors`) and the streamed
Datasets (:mod:`mheads.data.dataset_stream`), so that both train on the very same examples; and the class
count and bagging weights both derive from those examples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mheads.core.seeding import derived_generator
from mheads.data.errors import DataError
from mheads.data.subsets import stratified_limit, val_split
from mheads.ensemble.strategies import bootstrap_counts, bootstrap_unique

__all__ = [
    "RowChoice",
    "Rows",
    "bagging_weights",
    "choose_rows",
    "class_targets",
    "count_classes",
    "limit_rows",
    "not_class_indices",
]


@dataclass(frozen=True)
class RowChoice:
    """Which examples of a user's splits a run uses (the ``data.*`` fields of the same names, documented in
    ``mheads.config.data_config.DataConfig``): a seeded subset of each split (class-stratified where the
    targets are class indices), a held-out validation share of the training split, bagging member m's
    distinct examples."""

    train_limit: int | None = None
    test_limit: int | None = None
    val_fraction: float = 0.0
    bootstrap_unique: int | None = None

    @classmethod
    def of(cls, d: Any) -> RowChoice:
        """The choice a run's ``data:`` section makes."""
        return cls(d.train_limit, d.test_limit, d.val_fraction, d.bootstrap_unique)


@dataclass(frozen=True)
class Rows:
    """Positions (int64, CPU) into the train and test Datasets; ``val``: held out of train (None: no
    validation split asked for)."""

    train: torch.Tensor
    test: torch.Tensor
    val: torch.Tensor | None = None


def limit_rows(n: int, labels: torch.Tensor | None, limit: int | None, seed: int, split: str) -> torch.Tensor:
    """Positions (increasing) of ``limit`` of a split's ``n`` examples: class-stratified when ``labels`` (its
    class indices, ``(n,)``) are given, else a seeded subset; all of them when ``limit`` is None or >= n."""
    if limit is None or limit >= n:
        return torch.arange(n)
    if labels is not None:
        return torch.from_numpy(stratified_limit(labels.numpy(), limit, seed, split))
    perm = torch.randperm(n, generator=derived_generator(seed, "tensor-limit", split))
    return perm[:limit].sort().values


def choose_rows(
    choice: RowChoice,
    seed: int,
    n_train: int,
    n_test: int,
    train_labels: torch.Tensor | None = None,
    test_labels: torch.Tensor | None = None,
) -> Rows:
    """The rows ``choice`` keeps of splits of ``n_train`` / ``n_test`` examples (labels: their class
    indices, or None for targets that are not class indices; needed only by a limit below the split's
    size): the limits, then the validation split out of the limited train split, then bagging's distinct
    examples."""
    train = limit_rows(n_train, train_labels, choice.train_limit, seed, "train")
    test = limit_rows(n_test, test_labels, choice.test_limit, seed, "test")
    val = None
    if choice.val_fraction:
        keep, held = (torch.from_numpy(a) for a in val_split(len(train), choice.val_fraction, seed))
        train, val = train[keep], train[held]
    if choice.bootstrap_unique is not None:
        train = train[bootstrap_unique(len(train), choice.bootstrap_unique, seed)]
    return Rows(train, test, val)


def class_targets(y: torch.Tensor) -> bool:
    """Whether a split's targets ``(N, ...)`` are class indices: integers, one per example."""
    return y.ndim == 1 and not y.is_floating_point()


def not_class_indices(split: str, dtype: torch.dtype, shape: tuple[int, ...]) -> DataError:
    """The error for classification targets of a split (``shape``: the whole split's) that are not class
    indices."""
    return DataError(
        f"{split}: targets {dtype} of shape {shape}; classification expects integer class indices (N,): "
        "set task.name (regression, multi_hypothesis, segmentation) for other targets"
    )


def count_classes(
    train_y: torch.Tensor, test_y: torch.Tensor, items: tuple[torch.Tensor, torch.Tensor] | None = None
) -> list[str]:
    """Classification's classes ``"0" .. "K-1"``, K the largest class index of either split plus one.
    ``items``: the splits' item numbers of ``train_y`` / ``test_y`` (rows kept of a larger set), for the
    error naming a negative label (default: the positions)."""
    for k, (split, y) in enumerate((("train", train_y), ("test", test_y))):
        if not class_targets(y):
            raise not_class_indices(split, y.dtype, tuple(y.shape))
        negative = torch.nonzero(y < 0).flatten()
        if len(negative):
            at = int(negative[0]) if items is None else int(items[k][negative[0]])
            raise DataError(f"{split}[{at}]: label {int(y[negative[0]])}; expected a class index >= 0")
    return [str(i) for i in range(int(max(int(train_y.max()), int(test_y.max()))) + 1)]


def bagging_weights(
    n: int, members: int, seed: int, bagging: bool, device: torch.device
) -> torch.Tensor | None:
    """Per-member example weights ``(M, n)`` (each member's bootstrap counts; None without bagging)."""
    return bootstrap_counts(n, members, seed).float().to(device) if bagging else None
