"""Stateless, resumable batching from in-memory tensors by index.

Batch `i` is a pure function of (seed, i): the examples are laid out as an endless sequence of
epochs, each epoch a permutation drawn from a generator seeded by (seed, epoch), and batch i is the
slice [i * batch_size, (i + 1) * batch_size) of that sequence, wrapping across epoch boundaries.
Resuming at iteration i therefore needs no saved loader state; per-iteration randomness (augmentation, MCL
tie-breaks) is keyed the same way, by ``mheads.core.seeding``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch

from mheads.core.checks import check_int
from mheads.core.seeding import Stream, derived_generator

__all__ = ["BatchPlan", "BatchSource", "shard_rows"]


@runtime_checkable
class BatchSource(Protocol):
    """What the training loop reads: a source of batches. The resident loader
    (:class:`~mheads.data.resident.ResidentData`), the streaming one
    (:class:`~mheads.data.streaming.StreamData`) and a user's Datasets of any shape, read whole
    (:class:`~mheads.data.tensor_data.TensorData`) or streamed
    (:class:`~mheads.data.dataset_stream.DatasetStream`), implement it.

    ``train_batch(b, generator)``: batch ``b`` of the run's seeded plan, ``(inputs, targets, per-member
    weights (M, B) or None)``, a pure function of the run seed and ``b`` (exact resume); ``generator`` draws
    its augmentation. ``eval_batches(split, batch_size)``: ``(inputs, targets)`` of a split in order.
    ``split_size(split)``: its examples (0 when the run has no such split)."""

    device: torch.device
    shard: tuple[int, int] | None

    def train_batch(
        self, b: int, generator: torch.Generator
    ) -> tuple[Any, torch.Tensor, torch.Tensor | None]: ...

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[Any, torch.Tensor]]: ...

    def split_size(self, split: str) -> int: ...

    def describe(self) -> dict: ...


def shard_rows(shard: tuple[int, int] | None, batch: int) -> slice:
    """The rows of a ``batch``-example batch that data-parallel replica ``shard = (index, count)`` reads
    (equal consecutive shards; all of them when ``shard`` is None)."""
    if shard is None:
        return slice(0, batch)
    index, count = shard
    if count < 1 or not 0 <= index < count or batch % count:
        raise ValueError(
            f"shard: got {shard} for a batch of {batch}; expected (index, count) with "
            "0 <= index < count and count dividing the batch"
        )
    size = batch // count
    return slice(index * size, (index + 1) * size)


class BatchPlan:
    """Which example indices make up each training batch.

    num_examples: N, the size of the (in-memory) training split.
    batch_size: B; may exceed N, in which case a batch spans several epochs.
    seed: the run's data-order seed.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int):
        self.num_examples = check_int("num_examples", num_examples, 1)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.seed = check_int("seed", seed)
        # A batch touches at most ceil(B / N) + 1 epochs; keeping that many makes sequential use cheap.
        self._keep = -(-batch_size // num_examples) + 1
        self._permutations: OrderedDict[int, torch.Tensor] = OrderedDict()

    def permutation(self, epoch: int) -> torch.Tensor:
        """(N,) int64: the order of the examples in `epoch` (do not modify: it is cached)."""
        check_int("epoch", epoch, 0)
        perm = self._permutations.get(epoch)
        if perm is None:
            generator = derived_generator(self.seed, Stream.EPOCH, epoch)
            perm = torch.randperm(self.num_examples, generator=generator)
            self._permutations[epoch] = perm
            while len(self._permutations) > self._keep:
                self._permutations.popitem(last=False)
        else:
            self._permutations.move_to_end(epoch)
        return perm

    def epoch_of(self, iteration: int) -> int:
        """The epoch in which batch `iteration` starts."""
        return check_int("iteration", iteration, 0) * self.batch_size // self.num_examples

    def indices(self, iteration: int) -> torch.Tensor:
        """(batch_size,) int64 example indices of batch `iteration` (0-based), on the CPU."""
        start = check_int("iteration", iteration, 0) * self.batch_size
        end = start + self.batch_size
        parts = []
        while start < end:
            epoch, offset = divmod(start, self.num_examples)
            take = min(self.num_examples - offset, end - start)
            parts.append(self.permutation(epoch)[offset : offset + take])
            start += take
        return torch.cat(parts) if len(parts) > 1 else parts[0].clone()
