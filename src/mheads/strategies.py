"""Ensembling strategies as data (section 4, Table 1): seeds per member and bootstrap samples.

- Random initialization: `member_seeds` gives each member its own seed for its initial weights.
  ``shared=True`` gives every member the same seed, i.e. one set of initial weights (the paper's
  "Bagging" column keeps initial weights equal so that only the data differs).
- Bagging: each member draws its own bootstrap sample of the N training examples (N draws with
  replacement, once for the whole run) and sees only that sample. About 1 - 1/e = 63.2% of the
  examples appear in a sample, some of them several times (section 4).
- Combined: both of the above.
- Label split: `random_label_split` assigns each class to one member, evenly, for the hand-designed
  specialist ensembles the paper compares with MCL (section 6, "MCL As Label-Space Clustering").

How the engine realizes bagging:
- Independent members (no shared layers): member m can batch over its own sample, e.g.
  ``bootstrap_indices(...)[m][plan_m.indices(i)]``; each member then sees exactly its sample.
- Shared trunk (TreeNet): all members must see the same batch, so bagging becomes per-member example
  weights: with ``counts = bootstrap_counts(...)`` (M, N) and a batch of example indices `idx` (B,),
  ``example_weights(counts, idx)`` (M, B) weights member m's per-example loss by how often the example
  occurs in m's sample (0 = not in it). Over an epoch this gives each member the same expected
  gradient as training on its bootstrap sample; weights of 0 remove an example from that member
  entirely, as in bagging.
"""

from __future__ import annotations

import torch

from mheads.seeding import derive_seed, derived_generator

__all__ = [
    "bootstrap_counts",
    "bootstrap_indices",
    "example_weights",
    "member_seeds",
    "random_label_split",
    "unique_fraction",
]


def _check_int(field: str, value: object, low: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        raise ValueError(f"{field} must be an int{'' if low is None else f' >= {low}'}, got {value!r}")
    return value


def member_seeds(seed: int, num_members: int, shared: bool = False) -> list[int]:
    """One initialization seed per member, derived from the run seed.

    Member m's seed does not depend on `num_members`, so growing an ensemble keeps existing members.
    shared: give all members member 0's seed (same initial weights).
    """
    _check_int("seed", seed, None)
    _check_int("num_members", num_members, 1)
    return [derive_seed(seed, "init", 0 if shared else m) for m in range(num_members)]


def bootstrap_indices(num_examples: int, num_members: int, seed: int) -> torch.Tensor:
    """(M, N) int64: member m's bootstrap sample, N indices drawn uniformly with replacement.

    Each member has its own generator keyed by (seed, m): samples of existing members do not change
    when M changes.
    """
    _check_int("num_examples", num_examples, 1)
    _check_int("num_members", num_members, 1)
    _check_int("seed", seed, None)
    return torch.stack(
        [
            torch.randint(num_examples, (num_examples,), generator=derived_generator(seed, "bootstrap", m))
            for m in range(num_members)
        ]
    )


def bootstrap_counts(num_examples: int, num_members: int, seed: int) -> torch.Tensor:
    """(M, N) float32: how often each example occurs in each member's bootstrap sample (rows sum to N)."""
    indices = bootstrap_indices(num_examples, num_members, seed)
    counts = torch.zeros(num_members, num_examples, dtype=torch.float32)
    return counts.scatter_add_(1, indices, torch.ones_like(indices, dtype=torch.float32))


def example_weights(counts: torch.Tensor, batch_indices: torch.Tensor) -> torch.Tensor:
    """(M, B) per-member weights of a shared batch: counts: (M, N), batch_indices: (B,) int64."""
    if counts.ndim != 2:
        raise ValueError(f"counts must have shape (M, N), got {tuple(counts.shape)}")
    if batch_indices.ndim != 1:
        raise ValueError(f"batch_indices must have shape (B,), got {tuple(batch_indices.shape)}")
    return counts[:, batch_indices.to(counts.device)]


def unique_fraction(indices: torch.Tensor) -> torch.Tensor:
    """(M,) float: fraction of distinct examples in each member's sample; indices: (M, N)."""
    if indices.ndim != 2 or indices.shape[1] == 0:
        raise ValueError(f"indices must have shape (M, N) with N >= 1, got {tuple(indices.shape)}")
    ordered = indices.sort(dim=1).values
    distinct = 1 + (ordered[:, 1:] != ordered[:, :-1]).sum(dim=1)
    return distinct.float() / indices.shape[1]


def random_label_split(num_classes: int, num_members: int, seed: int) -> torch.Tensor:
    """(M, C) bool: a random even split of the C labels among M members.

    Every class goes to exactly one member; member sizes differ by at most one (CIFAR-10 over four
    members: 3, 3, 2, 2 classes, larger groups to the lower member indices).
    """
    _check_int("num_classes", num_classes, 1)
    _check_int("num_members", num_members, 1)
    _check_int("seed", seed, None)
    if num_members > num_classes:
        raise ValueError(
            f"num_members ({num_members}) must be <= num_classes ({num_classes}) "
            "so that every member gets a label"
        )
    order = torch.randperm(num_classes, generator=derived_generator(seed, "label-split"))
    assignment = torch.zeros(num_members, num_classes, dtype=torch.bool)
    assignment[torch.arange(num_classes) % num_members, order] = True
    return assignment
