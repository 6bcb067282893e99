"""From a run config to a distributed run: the communicator and the model wrapper the training loop takes."""

from __future__ import annotations

from collections.abc import Callable

from mheads.dist.comm import DistComm, default_backend, init_from_env
from mheads.dist.layout import make_layout
from mheads.dist.model import DistributedTreeNet
from mheads.dist.placement import Placement
from mheads.tree.treenet import TreeNet

__all__ = ["setup_from_config"]


def setup_from_config(cfg) -> tuple[DistComm, Callable[[TreeNet], DistributedTreeNet]]:
    """Join the torchrun job for ``cfg`` (``cfg.dist.placement``, ``cfg.dist.timeout_s``,
    ``cfg.train.device``).

    Returns ``(comm, wrap)`` for ``mheads.train.loop.fit(..., comm=comm, wrap=wrap)``: ``wrap(tree)`` keeps
    this rank's part of the TreeNet every rank builds. The backend is NCCL when training on CUDA, gloo on CPU.
    With ``cfg.dist.replicas`` R > 1 the job is R copies of the placement (:mod:`mheads.dist.layout`): the
    model spans its replica's ranks, and the root is replica 0's.
    """
    placement = Placement.from_dict(cfg.dist.placement)
    device = cfg.train.device
    backend = default_backend(None if device == "auto" else device)
    comm = init_from_env(cfg.dist.timeout_s, backend, root_rank=placement.root_rank)
    layout = make_layout(cfg.dist.replicas, comm.device.type)
    comm.set_layout(layout)

    def wrap(tree: TreeNet) -> DistributedTreeNet:
        return DistributedTreeNet(tree, placement, group=layout.model_group)

    return comm, wrap
