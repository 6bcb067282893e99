"""Where the parts of a TreeNet live: which rank computes the trunk, which holds each top-level branch, which
computes the loss. The distributed analogue of MPI-Caffe's per-layer ``include { mpi_rank: n }`` rules
(appendix E).

Ranks are positions in the process group the model runs on (the whole job by default), ``0..world_size-1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mheads.core.checks import is_int

__all__ = ["Placement", "PlacementError"]

# YAML spelling (config `dist.placement`) -> field name.
_KEYS = {"trunk": "trunk_rank", "branches": "branch_ranks", "root": "root_rank"}


class PlacementError(ValueError):
    """A placement that does not fit the model or the number of processes; the message names the field."""


_is_int = is_int


@dataclass
class Placement:
    """Which rank holds which part of a TreeNet.

    Args:
        trunk_rank: the rank computing the root's layers (the shared trunk); its output is broadcast to the
            branch ranks. Unused when the root has no layers (independent ensembles: every rank reads the
            input itself).
        branch_ranks: ``branch_ranks[j]`` holds the root's j-th top-level branch (with everything below it, so
            all members under that branch). Several branches may share a rank. None: round-robin,
            ``j % world_size``.
        root_rank: the rank where member logits ``(M, B, C)`` are gathered and the loss and metrics are
            computed.
    """

    trunk_rank: int = 0
    branch_ranks: list[int] | None = None
    root_rank: int = 0

    def __post_init__(self) -> None:
        for name in ("trunk_rank", "root_rank"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise PlacementError(f"placement.{name}: got {v!r}; expected a rank, an integer >= 0")
        if self.branch_ranks is not None:
            if isinstance(self.branch_ranks, (str, bytes)) or not isinstance(self.branch_ranks, Sequence):
                raise PlacementError(
                    f"placement.branch_ranks: got {self.branch_ranks!r}; expected a list of "
                    "ranks, one per top-level branch"
                )
            for j, r in enumerate(self.branch_ranks):
                if not _is_int(r) or r < 0:
                    raise PlacementError(
                        f"placement.branch_ranks[{j}]: got {r!r}; expected a rank, an integer >= 0"
                    )
            self.branch_ranks = list(self.branch_ranks)

    @classmethod
    def from_dict(cls, d: Mapping | None) -> Placement:
        """From the config's mapping ``{trunk: 0, branches: [0, 1, 2], root: 0}`` (every key optional; the
        field names ``trunk_rank``, ``branch_ranks``, ``root_rank`` are accepted too). None gives the
        defaults."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise PlacementError(
                f"placement: got {d!r}; expected a mapping like {{trunk: 0, branches: [0, 1, 2]}}"
            )
        kwargs = {}
        for key, value in d.items():
            field = _KEYS.get(key, key if key in _KEYS.values() else None)
            if field is None:
                raise PlacementError(f"placement: unknown key {key!r}; valid keys are trunk, branches, root")
            if field in kwargs:
                raise PlacementError(f"placement: {key!r} given twice (as {key!r} and its other spelling)")
            kwargs[field] = value
        return cls(**kwargs)

    def resolve(self, num_branches: int, world_size: int) -> Placement:
        """This placement checked against a model with ``num_branches`` top-level branches and ``world_size``
        ranks, with the default branch ranks filled in (round-robin)."""
        if not _is_int(num_branches) or num_branches < 1:
            raise PlacementError(f"num_branches: got {num_branches!r}; expected an integer >= 1")
        if not _is_int(world_size) or world_size < 1:
            raise PlacementError(f"world_size: got {world_size!r}; expected an integer >= 1")
        branches = self.branch_ranks
        if branches is None:
            branches = [j % world_size for j in range(num_branches)]
        if len(branches) != num_branches:
            raise PlacementError(
                f"placement.branch_ranks: got {len(branches)} ranks {branches}; "
                f"the model has {num_branches} top-level branches, give one rank for each"
            )
        hi = world_size - 1
        for name, r in (("trunk_rank", self.trunk_rank), ("root_rank", self.root_rank)):
            if r > hi:
                raise PlacementError(
                    f"placement.{name}: got {r}; only ranks 0..{hi} exist ({world_size} processes)"
                )
        for j, r in enumerate(branches):
            if r > hi:
                raise PlacementError(
                    f"placement.branch_ranks[{j}]: got {r}; only ranks 0..{hi} exist ({world_size} processes)"
                )
        return Placement(self.trunk_rank, list(branches), self.root_rank)

    def members_per_rank(self, leaves_per_branch: Sequence[int], world_size: int) -> list[int]:
        """How many members (leaves) each rank holds, for a resolved placement."""
        if self.branch_ranks is None:
            raise PlacementError(
                "placement.branch_ranks: got None (the default, round-robin); expected "
                "resolved ranks: call resolve(num_branches, world_size) first"
            )
        counts = [0] * world_size
        for r, n in zip(self.branch_ranks, leaves_per_branch):
            counts[r] += n
        return counts
