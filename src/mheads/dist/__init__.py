"""Model-parallel ensembles on torch.distributed (paper section 7, appendix E); the only package that imports
it.

- :func:`broadcast`, :func:`gather`: autograd-aware collectives (MPI-Caffe's MPIBroadcast / MPIGather).
- :class:`Placement`: which rank holds the trunk, each top-level branch and the loss.
- :class:`DistributedTreeNet`: one rank's part of a TreeNet; returns the member logits ``(M, B, C)`` at the
  root.
- :class:`DistComm`, :func:`init_from_env`: the training loop's communicator under torchrun.
- :class:`DistributedFailure`: a lost rank, named, instead of a hang.
"""

from mheads.dist.comm import Comm, DistComm, default_backend, init, init_from_env
from mheads.dist.faults import DistributedFailure
from mheads.dist.launch import setup_from_config
from mheads.dist.model import DistributedTreeNet
from mheads.dist.ops import broadcast, gather
from mheads.dist.placement import Placement, PlacementError

__all__ = [
    "Comm",
    "DistComm",
    "DistributedFailure",
    "DistributedTreeNet",
    "Placement",
    "PlacementError",
    "broadcast",
    "default_backend",
    "gather",
    "init",
    "init_from_env",
    "setup_from_config",
]
