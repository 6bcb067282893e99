"""The communicator protocol the training loop talks to, and its single-process implementation.

The loop needs only a few agreements between ranks: the root's loss (for the plateau schedule),
"did any rank see a NaN", "stop now" (SIGTERM), a barrier, the resumed run's state (JSON) and, with
data-parallel replicas, the gradient average and replica 0's weights on a resume. :class:`LocalComm`
answers them for one process; ``mheads.dist.DistComm`` answers them over torch.distributed, so the loop
itself never imports it.
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
    replica: int  # this process's data-parallel replica (0 evaluates and saves)
    replicas: int

    def broadcast_scalars(self, t: torch.Tensor) -> torch.Tensor: ...

    def broadcast_json(self, obj): ...

    def average_gradients(self, params) -> None: ...

    def sum_over_replicas(self, t: torch.Tensor) -> torch.Tensor: ...

    def copy_from_first_replica(self, named, keys: list[str]) -> dict: ...

    def any(self, flag: bool) -> bool: ...

    def all_true(self, flag: torch.Tensor) -> torch.Tensor: ...

    def barrier(self) -> None: ...


class LocalComm:
    """The single-process :class:`Comm`: this process is the root and agrees with itself."""

    is_root, rank, world_size, replica, replicas = True, 0, 1, 0, 1

    def broadcast_scalars(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def broadcast_json(self, obj):
        return obj

    def average_gradients(self, params) -> None:
        pass

    def sum_over_replicas(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def copy_from_first_replica(self, named, keys: list[str]) -> dict:
        return dict(named)

    def any(self, flag: bool) -> bool:
        return bool(flag)

    def all_true(self, flag: torch.Tensor) -> torch.Tensor:
        return flag

    def barrier(self) -> None:
        pass
