"""Stateless, resumable batching from in-memory tensors by index.

Batch `i` is a pure function of (seed, i): the examples are laid out as an endless sequence of
epochs, each epoch a permutation drawn from a generator seeded by (seed, epoch), and batch i is the
slice [i * batch_size, (i + 1) * batch_size) of that sequence, wrapping across epoch boundaries.
Resuming at iteration i therefore needs no saved loader state, and per-iteration randomness
(augmentation, MCL tie-breaks) comes from `iteration_generator`, keyed the same way.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from mheads.seeding import derived_generator

__all__ = ["STREAM_AUGMENT", "STREAM_TIE_BREAK", "BatchPlan", "iteration_generator"]

# Stream ids for `iteration_generator`: one per independent use of randomness within an iteration.
STREAM_AUGMENT = 0
STREAM_TIE_BREAK = 1


def _check_int(field: str, value: object, low: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        raise ValueError(f"{field} must be an int{'' if low is None else f' >= {low}'}, got {value!r}")
    return value


class BatchPlan:
    """Which example indices make up each training batch.

    num_examples: N, the size of the (in-memory) training split.
    batch_size: B; may exceed N, in which case a batch spans several epochs.
    seed: the run's data-order seed.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int):
        self.num_examples = _check_int("num_examples", num_examples, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.seed = _check_int("seed", seed, None)
        # A batch touches at most ceil(B / N) + 1 epochs; keeping that many makes sequential use cheap.
        self._keep = -(-batch_size // num_examples) + 1
        self._permutations: OrderedDict[int, torch.Tensor] = OrderedDict()

    def permutation(self, epoch: int) -> torch.Tensor:
        """(N,) int64: the order of the examples in `epoch` (do not modify: it is cached)."""
        _check_int("epoch", epoch, 0)
        perm = self._permutations.get(epoch)
        if perm is None:
            generator = derived_generator(self.seed, "epoch", epoch)
            perm = torch.randperm(self.num_examples, generator=generator)
            self._permutations[epoch] = perm
            while len(self._permutations) > self._keep:
                self._permutations.popitem(last=False)
        else:
            self._permutations.move_to_end(epoch)
        return perm

    def epoch_of(self, iteration: int) -> int:
        """The epoch in which batch `iteration` starts."""
        return _check_int("iteration", iteration, 0) * self.batch_size // self.num_examples

    def indices(self, iteration: int) -> torch.Tensor:
        """(batch_size,) int64 example indices of batch `iteration` (0-based), on the CPU."""
        start = _check_int("iteration", iteration, 0) * self.batch_size
        end = start + self.batch_size
        parts = []
        while start < end:
            epoch, offset = divmod(start, self.num_examples)
            take = min(self.num_examples - offset, end - start)
            parts.append(self.permutation(epoch)[offset : offset + take])
            start += take
        return torch.cat(parts) if len(parts) > 1 else parts[0].clone()


def iteration_generator(
    seed: int, iteration: int, stream: int, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A generator determined only by (seed, iteration, stream), for randomness inside one step.

    Use one stream id per purpose (`STREAM_AUGMENT`, `STREAM_TIE_BREAK`, ...) so that adding a
    consumer of randomness never shifts the numbers another one draws.
    """
    _check_int("seed", seed, None)
    _check_int("iteration", iteration, 0)
    _check_int("stream", stream, 0)
    return derived_generator(seed, "iteration", iteration, stream, device=device)
