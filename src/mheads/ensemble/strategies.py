"""Ensembling strategies as data (section 4, Table 1): bootstrap samples and label splits.

- Random initialization is a seed per member (``mheads.core.seeding.member_init_seeds``, used by ``TreeNet``);
  ``model.init: same`` gives every member member 0's seed, i.e. one set of initial weights (the paper's
  "Bagging" column keeps initial weights equal so that only the data differs).
- Bagging: each member draws its own bootstrap sample of the N training examples (N draws with replacement,
  once for the whole run) and sees only that sample. About 1 - 1/e = 63.2% of the examples appear in a sample,
  some of them several times (section 4).
- Combined: both of the above.
- Label split: `random_label_split` assigns each class to one member, evenly, for the hand-designed specialist
  ensembles the paper compares with MCL (section 6, "MCL As Label-Space Clustering").

How training realizes bagging: all members of a TreeNet see the same batch (the trunk runs once), so bagging
becomes per-member example weights. With ``counts = bootstrap_counts(...)`` (M, N) and a batch of example
indices ``idx`` (B,), ``counts[:, idx]`` (M, B) weights member m's per-example loss by how often the example
occurs in m's sample (0 = not in it). Over an epoch this gives each member the same expected gradient as
training on its bootstrap sample; weights of 0 remove an example from that member entirely, as in bagging.
"""

from __future__ import annotations

import torch

from mheads.core.checks import check_int
from mheads.core.seeding import Stream, derived_generator

__all__ = ["bootstrap_counts", "bootstrap_indices", "bootstrap_unique", "random_label_split"]


def bootstrap_indices(num_examples: int, num_members: int, seed: int) -> torch.Tensor:
    """(M, N) int64: member m's bootstrap sample, N indices drawn uniformly with replacement.

    Each member has its own generator keyed by (seed, m): samples of existing members do not change
    when M changes.
    """
    check_int("num_examples", num_examples, 1)
    check_int("num_members", num_members, 1)
    check_int("seed", seed)
    return torch.stack(
        [
            torch.randint(
                num_examples, (num_examples,), generator=derived_generator(seed, Stream.BOOTSTRAP, m)
            )
            for m in range(num_members)
        ]
    )


def bootstrap_counts(num_examples: int, num_members: int, seed: int) -> torch.Tensor:
    """(M, N) float32: how often each example occurs in each member's bootstrap sample (rows sum to N)."""
    indices = bootstrap_indices(num_examples, num_members, seed)
    counts = torch.zeros(num_members, num_examples, dtype=torch.float32)
    return counts.scatter_add_(1, indices, torch.ones_like(indices, dtype=torch.float32))


def bootstrap_unique(num_examples: int, member: int, seed: int) -> torch.Tensor:
    """(U,) int64, sorted: the distinct examples of member ``member``'s bootstrap sample (the one
    :func:`bootstrap_indices` draws for it), U about 63.2% of N. Training one model on exactly these, each
    once, is section 4's control: bagging's loss of unique data without its duplicates."""
    check_int("member", member, 0)
    return torch.unique(bootstrap_indices(num_examples, member + 1, seed)[member])


def random_label_split(num_classes: int, num_members: int, seed: int) -> torch.Tensor:
    """(M, C) bool: a random even split of the C labels among M members.

    Every class goes to exactly one member; member sizes differ by at most one (CIFAR-10 over four
    members: 3, 3, 2, 2 classes, larger groups to the lower member indices).
    """
    check_int("num_classes", num_classes, 1)
    check_int("num_members", num_members, 1, num_classes)
    check_int("seed", seed)
    order = torch.randperm(num_classes, generator=derived_generator(seed, Stream.LABEL_SPLIT))
    assignment = torch.zeros(num_members, num_classes, dtype=torch.bool)
    assignment[torch.arange(num_classes) % num_members, order] = True
    return assignment
