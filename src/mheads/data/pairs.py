"""The map-style Dataset the task readers return (issue 32): `(input, target)` pairs held in memory, and a
seeded train/test split of any map-style Dataset.

`TensorPairs(inputs, targets)`: `inputs` a tensor `(N, ...)` or a list of N tensors (images of different
sizes), `targets` likewise; item i is `(inputs[i], targets[i])`. A `torch.utils.data.DataLoader` batches it
as any Dataset (default collation stacks equal-sized items).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mheads.core.checks import check_int, check_number

__all__ = ["TensorPairs", "seeded_split"]


class TensorPairs(torch.utils.data.Dataset):
    """`(inputs[i], targets[i])` for i < N; `inputs` and `targets` are tensors with first axis N or
    sequences of N tensors."""

    def __init__(
        self, inputs: torch.Tensor | Sequence[torch.Tensor], targets: torch.Tensor | Sequence[torch.Tensor]
    ) -> None:
        if len(inputs) != len(targets):
            raise ValueError(
                f"targets: got {len(targets)} targets for {len(inputs)} inputs; expected one target per input"
            )
        self.inputs = inputs
        self.targets = targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.targets[index]

    def subset(self, index: torch.Tensor) -> TensorPairs:
        """The pairs at `index` (int64 `(K,)`), as a new `TensorPairs` (copies for tensors)."""
        if isinstance(self.inputs, torch.Tensor) and isinstance(self.targets, torch.Tensor):
            return TensorPairs(self.inputs[index], self.targets[index])
        rows = index.tolist()
        return TensorPairs([self.inputs[i] for i in rows], [self.targets[i] for i in rows])


def seeded_split(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random split of `range(n)` into train and test indices (int64, each sorted), the same for the same
    `(n, test_fraction, seed)`: the test split holds `round(n * test_fraction)` examples, at least one of
    each split when n >= 2."""
    check_int("n", n, 2)
    check_number("test_fraction", test_fraction, 0.0, 1.0, strict_low=True)
    if test_fraction >= 1.0:
        raise ValueError(f"test_fraction: got {test_fraction!r}; expected a number > 0.0 and < 1.0")
    check_int("seed", seed, 0)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    test = min(max(round(n * test_fraction), 1), n - 1)
    return order[test:].sort().values, order[:test].sort().values
