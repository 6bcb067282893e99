"""The two-dimensional layout of a distributed run: data-parallel replicas x the model-parallel placement.

``dist.replicas: R`` on a job of ``W`` processes makes a ``(R, P)`` :class:`~torch.distributed.device_mesh.
DeviceMesh` with ``P = W / R``: global rank ``r * P + p`` is model rank ``p`` of replica ``r``. Each replica
is one copy of the placement (its "model" process group, the group a
:class:`~mheads.dist.model.DistributedTreeNet` spans) and reads its shard of every batch; the ranks holding
the same part in different replicas form a "replica" group, over which gradients are averaged. With ``R = 1``
no mesh is built and the model spans the whole job, as before replicas existed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist

from mheads.config import ConfigError

__all__ = ["Layout", "LayoutError", "make_layout"]


class LayoutError(ConfigError):
    """A replica count that does not fit the job; the message names ``dist.replicas``."""


@dataclass(frozen=True)
class Layout:
    """Where this process sits in the ``(replicas, model ranks)`` grid.

    Attributes:
        replicas, model_ranks: the grid's shape (``replicas * model_ranks`` = world size).
        replica, model_rank: this process's coordinates.
        model_group: the process group of this replica's placement (None: the whole job, when
            ``replicas == 1``).
        replica_group: the group of this model rank's copies across replicas (None when ``replicas == 1``).
        mesh: the DeviceMesh (None when ``replicas == 1``).
    """

    replicas: int
    model_ranks: int
    replica: int
    model_rank: int
    model_group: object = None
    replica_group: object = None
    mesh: object = None

    def global_rank(self, replica: int, model_rank: int) -> int:
        return replica * self.model_ranks + model_rank


def make_layout(replicas: int, device_type: str = "cpu") -> Layout:
    """The layout of the running job (collective: every rank calls it)."""
    world, rank = dist.get_world_size(), dist.get_rank()
    if replicas < 1 or world % replicas:
        raise LayoutError(
            f"dist.replicas: got {replicas}; expected a divisor of the number of processes "
            f"({world}): world size = replicas x the ranks the placement uses"
        )
    per = world // replicas
    if replicas == 1:
        return Layout(1, per, 0, rank)
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device_type, (replicas, per), mesh_dim_names=("replica", "model"))
    return Layout(
        replicas,
        per,
        rank // per,
        rank % per,
        model_group=mesh.get_group("model"),
        replica_group=mesh.get_group("replica"),
        mesh=mesh,
    )
