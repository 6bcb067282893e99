"""The map-style Dataset the task readers return (issue 32): `(input, target)` pairs held in memory, and a
seeded train/test split of any map-style Dataset.

`TensorPairs(inputs, targets)`: `inputs` a tensor `(N, ...)`, a list of N tensors (images of different
sizes) or a dict of tensors `{name: (N, ...)}` (item i's input is then `{name: inputs[name][i]}`, token ids
and an attention mask, say), `targets` a tensor or a list; item i is `(inputs[i], targets[i])`. A
`torch.utils.data.DataLoader` batches it as any Dataset (default collation stacks equal-sized items, and a
dict's entries key by key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mheads.core.checks import check_int, check_number

__all__ = ["TensorPairs", "seeded_split"]


class TensorPairs(torch.utils.data.Dataset):
    """`(inputs[i], targets[i])` for i < N; `inputs` and `targets` are tensors with first axis N or
    sequences of N tensors; `inputs` may also be a dict of tensors with first axis N (item i's input: the
    dict of their rows i)."""

    def __init__(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
        targets: torch.Tensor | Sequence[torch.Tensor],
    ) -> None:
        lengths = [len(v) for v in inputs.values()] if isinstance(inputs, Mapping) else [len(inputs)]
        if not lengths or any(n != len(targets) for n in lengths):
            raise ValueError(
                f"targets: got {len(targets)} targets for inputs of {lengths} rows; expected one target per "
                "input (and every input tensor of a dict as long)"
            )
        self.inputs = inputs
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        if isinstance(self.inputs, Mapping):
            return {k: v[index] for k, v in self.inputs.items()}, self.targets[index]
        return self.inputs[index], self.targets[index]

    def subset(self, index: torch.Tensor) -> TensorPairs:
        """The pairs at `index` (int64 `(K,)`), as a new `TensorPairs` (copies for tensors)."""
        rows = index.tolist()
        targets = (
            self.targets[index] if isinstance(self.targets, torch.Tensor) else [self.targets[i] for i in rows]
        )
        if isinstance(self.inputs, Mapping):
            return TensorPairs({k: v[index] for k, v in self.inputs.items()}, targets)
        if isinstance(self.inputs, torch.Tensor):
            return TensorPairs(self.inputs[index], targets)
        return TensorPairs([self.inputs[i] for i in rows], targets)


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
