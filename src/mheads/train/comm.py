"""The communicator protocol the training loop talks to, and its single-process implementation.

The loop needs only a few agreements between ranks: the root's loss (for the plateau schedule),
"did any rank see a NaN", "stop now" (SIGTERM) and a barrier. :class:`LocalComm` answers them for one process;
``mheads.dist.DistComm`` answers them over torch.distributed, so the loop itself never imports it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["Comm", "LocalComm"]


@runtime_checkable
class Comm(Protocol):
    """What the loop may ask of the ranks (all calls are collective: every rank makes them, in the same
    order)."""

    is_root: bool
    rank: int
    world_size: int

    def broadcast_scalars(self, t: torch.Tensor) -> torch.Tensor: ...

    def any(self, flag: bool) -> bool: ...

    def barrier(self) -> None: ...


class LocalComm:
    """The single-process :class:`Comm`: this process is the root and agrees with itself."""

    is_root, rank, world_size = True, 0, 1

    def broadcast_scalars(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def any(self, flag: bool) -> bool:
        return bool(flag)

    def barrier(self) -> None:
        pass
