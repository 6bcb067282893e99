"""Autograd-aware broadcast and gather, MPI-Caffe's MPIBroadcast and MPIGather layers (appendix E.1).

Written on plain ``torch.distributed`` collectives: ``torch.distributed.nn.functional`` is deprecated, and the
functional-collectives broadcast gives non-source ranks a wrong gradient. Ranks are global ranks, as in
``torch.distributed``; ``group`` is any process group (None: the whole job) and may be a subset of the ranks.

Every rank of the group must call an op, and, when gradients are enabled, must later run its backward (which
is another collective), in the same order on every rank. So that the backward runs even on a rank whose input
needs no gradient (a receiver of a broadcast, a rank contributing zero rows to a gather), the output is tied
to an internal placeholder that requires grad whenever grad mode is on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist

from mheads.dist.faults import collective

__all__ = ["CommClock", "broadcast", "gather", "timed"]


class CommClock:
    """Seconds this process spent inside the ops' collectives (forward and backward) while :func:`timed` is
    on."""

    def __init__(self):
        self.seconds, self.calls = 0.0, 0


_clock: CommClock | None = None


@contextmanager
def timed(clock: CommClock) -> Iterator[CommClock]:
    """Accumulate into ``clock`` the time spent in :func:`broadcast` / :func:`gather` collectives within the
    block (the communication-cost benchmark). On CUDA the device is synchronized around each collective, so
    that the time is the collective's, not the queued kernels'."""
    global _clock
    previous, _clock = _clock, clock
    try:
        yield clock
    finally:
        _clock = previous


@contextmanager
def _comm(what: str, device: torch.device):
    clock = _clock
    if clock is None:
        with collective(what):
            yield
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with collective(what):
        yield
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    clock.seconds += time.perf_counter() - start
    clock.calls += 1


def _anchor(x: torch.Tensor) -> torch.Tensor:
    # Zero-element leaf that requires grad: makes the op's output part of the graph on every rank (module
    # doc).
    return torch.empty(0, device=x.device, requires_grad=torch.is_grad_enabled() and not x.requires_grad)


def _group_ranks(group) -> list[int]:
    return dist.get_process_group_ranks(group if group is not None else dist.group.WORLD)


def _check_member(name: str, rank: int, ranks: list[int]) -> None:
    if rank not in ranks:
        raise ValueError(f"{name}: got rank {rank}; it is not in the group (ranks {ranks})")
    me = dist.get_rank()
    if me not in ranks:  # torch.distributed would silently skip the collective on a non-member
        raise ValueError(
            f"group: this process (rank {me}) is not in the group (ranks {ranks}); only members call"
        )


class _Broadcast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, src: int, group, anchor: torch.Tensor) -> torch.Tensor:
        ctx.src, ctx.group = src, group
        ctx.is_src = dist.get_rank() == src
        ctx.x_needs_grad = x.requires_grad
        out = (
            x.detach().clone(memory_format=torch.contiguous_format)
            if ctx.is_src
            else torch.empty(x.shape, dtype=x.dtype, device=x.device)
        )
        with _comm("broadcast", out.device):
            dist.broadcast(out, src=src, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # Sum every copy's gradient at the source (the source's own copy included). reduce may overwrite the
        # buffer on non-destination ranks, so it works on a private contiguous copy.
        g = grad.clone(memory_format=torch.contiguous_format)
        with _comm("broadcast backward (reduce)", g.device):
            dist.reduce(g, dst=ctx.src, op=dist.ReduceOp.SUM, group=ctx.group)
        gx = g if ctx.is_src and ctx.x_needs_grad else None
        return gx, None, None, None


def broadcast(x: torch.Tensor, src: int, group=None) -> torch.Tensor:
    """Copy ``x`` from rank ``src`` to every rank of ``group``.

    Args:
        x: on ``src``, the tensor to send; on the other ranks, a tensor of the same shape and dtype whose
            values are ignored (``torch.empty`` is enough).
        src: the sending rank (global rank, a member of ``group``).
    Returns:
        A new tensor equal to ``src``'s ``x`` on every rank. Backward: the gradients of all the copies are
        summed into ``src``'s ``x`` (``dist.reduce``); other ranks' ``x`` gets no gradient.
    """
    _check_member("broadcast src", src, _group_ranks(group))
    return _Broadcast.apply(x, src, group, _anchor(x))


def _exchange_sizes(n: int, ranks: list[int], group, device: torch.device) -> list[int]:
    sizes = torch.zeros(len(ranks), dtype=torch.int64, device=device)
    mine = torch.tensor([n], dtype=torch.int64, device=device)
    parts = list(sizes.split(1))
    with _comm("gather (sizes)", device):
        dist.all_gather(parts, mine, group=group)
    return [int(p) for p in parts]


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, x: torch.Tensor, dst: int, group, sizes: list[int], anchor: torch.Tensor
    ) -> torch.Tensor:
        ctx.dst, ctx.group, ctx.sizes = dst, group, sizes
        ctx.is_dst = dist.get_rank() == dst
        ctx.x_needs_grad = x.requires_grad
        ctx.n = x.shape[0]
        tail = tuple(x.shape[1:])
        width = max(sizes)
        ctx.width, ctx.tail = width, tail
        if width == 0:  # nothing to move; every rank knows it from `sizes`
            return x.new_empty((0,) + tail)
        # Ranks may hold different numbers of rows: pad every contribution to the largest.
        buf = x.new_zeros((width,) + tail)
        buf[: ctx.n] = x.detach()
        slots = [torch.empty_like(buf) for _ in sizes] if ctx.is_dst else None
        with _comm("gather", buf.device):
            dist.gather(buf, slots, dst=dst, group=group)
        if slots is None:  # not the destination
            return x.new_empty((0,) + tail)
        return torch.cat([s[:n] for s, n in zip(slots, sizes)], dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.width == 0:
            return (grad.new_zeros((0,) + ctx.tail) if ctx.x_needs_grad else None), None, None, None, None
        recv = grad.new_empty((ctx.width,) + ctx.tail)
        slots = None
        if ctx.is_dst:
            slots = []
            for part, n in zip(grad.split(ctx.sizes, dim=0), ctx.sizes):
                slot = grad.new_zeros((ctx.width,) + ctx.tail)
                slot[:n] = part
                slots.append(slot)
        with _comm("gather backward (scatter)", recv.device):
            dist.scatter(recv, slots, src=ctx.dst, group=ctx.group)
        gx = recv[: ctx.n] if ctx.x_needs_grad else None
        return gx, None, None, None, None


def gather(x: torch.Tensor, dst: int, group=None, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """Concatenate every group rank's ``x`` along dim 0 at rank ``dst``.

    Args:
        x: ``(n_r, *S)`` on group rank r; ``n_r`` may differ between ranks (0 allowed), ``S`` must not.
        dst: the receiving rank (global rank, a member of ``group``).
        sizes: every group rank's ``n_r``, in group-rank order, when the caller knows them (a static
            placement); None exchanges them first (one extra small collective).
    Returns:
        On ``dst``: ``(sum_r n_r, *S)``, rank by rank in group-rank order. Elsewhere: a zero-element
        ``(0, *S)`` tensor on the graph, whose backward delivers this rank's rows of ``dst``'s gradient
        (``dist.scatter``).
    """
    ranks = _group_ranks(group)
    _check_member("gather dst", dst, ranks)
    if x.ndim < 1:
        raise ValueError("gather x: got a 0-d tensor; expected (n, ...) rows to concatenate")
    me = ranks.index(dist.get_rank())
    if sizes is None:
        sizes = _exchange_sizes(x.shape[0], ranks, group, x.device)
    else:
        sizes = [int(s) for s in sizes]
        if len(sizes) != len(ranks):
            raise ValueError(
                f"gather sizes: got {len(sizes)} sizes; the group has {len(ranks)} ranks, give one each"
            )
        if sizes[me] != x.shape[0]:
            raise ValueError(f"gather sizes[{me}]: got {sizes[me]}; this rank's x has {x.shape[0]} rows")
    return _Gather.apply(x, dst, group, sizes, _anchor(x))
