"""A TreeNet split across processes (paper section 7, appendix E): MPI-Caffe's broadcast/gather placement.

Every rank builds the same TreeNet (same config and seeds, hence the same initial weights as a single-process
run) and wraps it; each rank keeps only its part. Per batch: the trunk rank runs the root's layers and
broadcasts their output to the branch ranks; each branch rank runs its branches; the member logits are
gathered at the root rank, which computes the loss. Backward retraces the same path: the root's gradient is
scattered back to the branch ranks, and the trunk-output gradients are summed at the trunk rank. Each rank
then steps its own optimizer over its own parameters.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import nn

from mheads.dist.faults import collective
from mheads.dist.ops import broadcast, gather
from mheads.dist.placement import Placement, PlacementError
from mheads.dist.transfer import recv_named, send_named
from mheads.tree.treenet import TreeNet

__all__ = ["DistributedTreeNet"]


class _Remote(nn.Module):
    """Stands in for a branch another rank holds (keeps the branch indices, hence the state_dict keys,
    intact)."""

    def __init__(self, rank: int):
        super().__init__()
        self.rank = rank

    def extra_repr(self) -> str:
        return f"rank={self.rank}"

    def forward(self, *args):
        raise RuntimeError(f"this branch lives on rank {self.rank}; it cannot run here")


class _Part(nn.Module):
    """The root as this rank holds it: the trunk's layers (an empty Sequential on other ranks) and every
    top-level branch (a `_Remote` where another rank holds it), under the full TreeNet's state keys."""

    def __init__(self, layers: nn.Module, branches: nn.ModuleList):
        super().__init__()
        self.layers = layers
        self.branches = branches


def _tie(anchor: torch.Tensor, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    """A zero-element ``shape`` tensor on ``anchor``'s graph: its backward sends a zero gradient into
    ``anchor``, so that ranks with no members of their own still run the backward collectives of ``anchor``'s
    history."""
    view = anchor.reshape(-1)[:0].reshape((0,) + (1,) * (len(shape) - 1))
    return view.expand(shape).to(dtype)


class DistributedTreeNet(nn.Module):
    """The part of a TreeNet this rank holds, with the communication that joins the parts.

    Args:
        tree: the full TreeNet, built identically on every rank. It is consumed: the parts other ranks hold
            are moved to the ``meta`` device (shapes only, no memory), so ``tree.param_counts()`` still
            describes the whole model but ``tree``'s weights are only partly real.
        placement: a :class:`Placement` (or its config mapping); None: trunk and root on rank 0, branches
            round-robin.
        group: the process group the model spans (None: the whole job); placement ranks are ranks in it.

    Construction is collective: every rank of ``group`` must construct it, with the same tree and placement.
    ``forward``, ``full_state_dict`` and ``load_full_state_dict`` are collective too.
    """

    def __init__(self, tree: TreeNet, placement: Placement | Mapping | None = None, group=None):
        super().__init__()
        placement = self._checked(tree, placement)
        self._join(group)
        root = tree.root
        n_branches = len(root.branches)
        p = placement.resolve(n_branches, len(self._ranks))
        branch_ranks = p.branch_ranks
        assert branch_ranks is not None  # resolve fills in the default ranks
        self.placement, self.world_size, self._branch_ranks = p, len(self._ranks), branch_ranks
        self.rank = self._ranks.index(dist.get_rank())
        self.is_root = self.rank == p.root_rank
        self.num_members = tree.num_members
        self.has_trunk = not root.is_identity
        self._plan_collectives()
        self._plan_member_order([b.num_leaves() for b in root.branches])
        self._keep_own_part(tree)

    @staticmethod
    def _checked(tree: TreeNet, placement: Placement | Mapping | None) -> Placement:
        """The placement (None or a config mapping made a :class:`Placement`), once torch.distributed is up
        and ``tree`` is a TreeNet."""
        if not dist.is_initialized():
            raise RuntimeError(
                "DistributedTreeNet: torch.distributed is not initialized; call "
                "mheads.dist.init_from_env first (under torchrun)"
            )
        if not isinstance(tree, TreeNet):
            raise TypeError(f"tree: got {type(tree).__name__}; expected a mheads.tree.treenet.TreeNet")
        if placement is None or isinstance(placement, Mapping):
            placement = Placement.from_dict(placement)
        return placement

    def _join(self, group) -> None:
        """The process group the model spans and its ranks, which must include this process."""
        self.group = group
        self._ranks = dist.get_process_group_ranks(group if group is not None else dist.group.WORLD)
        if dist.get_rank() not in self._ranks:
            raise ValueError(
                f"group: this process (rank {dist.get_rank()}) is not in the group {self._ranks}"
            )

    def _plan_collectives(self) -> None:
        """The ranks each collective joins (the trunk's broadcast, the logits' gather) and their process
        groups; every rank must hold a part. Creating a group is collective: every rank runs this."""
        p, branch_ranks = self.placement, self._branch_ranks
        self._bcast_ranks = sorted({p.trunk_rank, *branch_ranks}) if self.has_trunk else []
        self._gather_ranks = sorted({p.root_rank, *branch_ranks})
        idle = [
            r for r in range(self.world_size) if r not in self._bcast_ranks and r not in self._gather_ranks
        ]
        if idle:
            raise PlacementError(
                f"placement: ranks {idle} would hold no part of the model (trunk rank "
                f"{p.trunk_rank}, branch ranks {branch_ranks}, root rank {p.root_rank}); "
                f"start fewer processes or place branches there"
            )
        # A collective is needed only where a part lives on another rank than its consumer (None = the world).
        self._bcast = len(self._bcast_ranks) > 1
        self._gather = len(self._gather_ranks) > 1
        self._bgroup = self._subgroup(self._bcast_ranks) if self._bcast else None
        self._ggroup = self._subgroup(self._gather_ranks) if self._gather else None

    def _plan_member_order(self, leaves: list[int]) -> None:
        """The gather returns members rank by rank (``_sizes`` per gathering rank); ``_perm`` reorders them
        into depth-first leaf order at the root (None where the two agree). ``leaves``: members per branch."""
        n_branches, branch_ranks = len(leaves), self._branch_ranks
        offsets = [sum(leaves[:j]) for j in range(n_branches)]
        order = [
            m
            for r in self._gather_ranks
            for j in range(n_branches)
            if branch_ranks[j] == r
            for m in range(offsets[j], offsets[j] + leaves[j])
        ]
        self._sizes = [
            sum(n for j, n in enumerate(leaves) if branch_ranks[j] == r) for r in self._gather_ranks
        ]
        pos = [order.index(m) for m in range(self.num_members)]
        self._perm = None if pos == list(range(self.num_members)) else torch.tensor(pos)

    def _keep_own_part(self, tree: TreeNet) -> None:
        """Keep this rank's part of ``tree``; the rest goes to the meta device (shape inference only).
        tree.state_dict() still lists every key, which is how the root knows the full layout."""
        root, branch_ranks = tree.root, self._branch_ranks
        n_branches = len(root.branches)
        self._local = [j for j in range(n_branches) if branch_ranks[j] == self.rank]
        holds_trunk = self.has_trunk and self.rank == self.placement.trunk_rank
        if not holds_trunk:
            root.layers.to("meta")
        for j, branch in enumerate(root.branches):
            if j not in self._local:
                branch.to("meta")
        self.root = _Part(
            root.layers if holds_trunk else nn.Sequential(),
            nn.ModuleList(
                [
                    root.branches[j] if j in self._local else _Remote(branch_ranks[j])
                    for j in range(n_branches)
                ]
            ),
        )
        self._meta = {"trunk": root.layers, "branch": root.branches[0]}  # plain dict: not submodules
        self._holds_trunk = holds_trunk
        self._keys = list(tree.state_dict().keys())
        self._owner = {k: self._owner_of(k) for k in self._keys}
        self._shape_cache: dict = {}

    # --- construction helpers -------------------------------------------------------------------------------
    def _subgroup(self, ranks: list[int]):
        """A process group over ``ranks`` (group ranks); the model's own group when it covers all of them."""
        if len(ranks) == self.world_size:
            return self.group
        global_ranks = [self._ranks[r] for r in ranks]
        if self.group is None:  # torch requires every process of the job to enter new_group
            return dist.new_group(global_ranks)
        if self.rank not in ranks:
            return None
        return dist.new_group(global_ranks, use_local_synchronization=True)

    def _owner_of(self, key: str) -> int:
        if key.startswith("root.layers."):
            return self.placement.trunk_rank
        if key.startswith("root.branches."):
            return self._branch_ranks[int(key.split(".")[2])]
        raise ValueError(f"state key {key!r}: not under root.layers or root.branches; cannot place it")

    # --- forward --------------------------------------------------------------------------------------------
    def _meta_shape(self, what: str, x: torch.Tensor, h: torch.Tensor | None) -> tuple:
        """Shape of the trunk output (``what="trunk"``) or of one member's logits (``"leaf"``) for input
        ``x``, from the meta copies (no memory, no arithmetic); cached per input shape."""
        key = (what, tuple(x.shape), x.dtype)
        if key not in self._shape_cache:
            with torch.no_grad():
                if h is None:
                    h = self._meta["trunk"](torch.empty(x.shape, dtype=x.dtype, device="meta"))
                out = (
                    h
                    if what == "trunk"
                    else self._meta["branch"](torch.empty(h.shape, dtype=h.dtype, device="meta"))[0]
                )
            self._shape_cache[key] = tuple(out.shape)
        return self._shape_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, ...), the same batch on every rank -> on the root, member logits (M, B, C) in member order;
        elsewhere a zero-element (0, B, C) tensor whose backward runs this rank's share of the backward
        pass."""
        p = self.placement
        # Exchanged tensors use at least float32, so that every rank agrees on the dtype even under autocast
        # (bf16 -> f32 -> bf16 is exact, so the branches see the same values as in a single process).
        cdtype = torch.promote_types(x.dtype, torch.float32) if x.is_floating_point() else torch.float32
        h = None
        if not self.has_trunk:
            h = x
        elif self._holds_trunk:
            h = self.root.layers(x)
        if self._bcast and self.rank in self._bcast_ranks:
            src = self._ranks[p.trunk_rank]
            if h is not None:  # the trunk rank (a broadcast implies a trunk, so no other rank has h yet)
                h = broadcast(h.to(cdtype), src, self._bgroup)
            else:
                h = broadcast(
                    torch.empty(self._meta_shape("trunk", x, None), dtype=cdtype, device=x.device),
                    src,
                    self._bgroup,
                )
        outs = [leaf for j in self._local for leaf in self.root.branches[j](h)]
        if outs:
            local = torch.stack(outs).to(cdtype)  # (m_rank, B, C)
        else:
            shape = (0,) + self._meta_shape("leaf", x, None if h is None else h.detach().to("meta"))
            local = (
                _tie(h, shape, cdtype) if h is not None else torch.empty(shape, dtype=cdtype, device=x.device)
            )
        # the trunk rank holding no branch: backward = broadcast's reduce
        if self.rank not in self._gather_ranks:
            return local
        out = local
        if self._gather:
            out = gather(local, self._ranks[p.root_rank], self._ggroup, sizes=self._sizes)
        if self.is_root and self._perm is not None:
            if self._perm.device != out.device:  # moved once, not copied from the host every batch
                self._perm = self._perm.to(out.device)
            out = out.index_select(0, self._perm)
        return out

    # --- whole-model state at the root ----------------------------------------------------------------------
    def _device(self) -> torch.device:
        g = self.group if self.group is not None else dist.group.WORLD
        if dist.get_backend(g) == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def state_keys(self) -> list[str]:
        """Every key of the full TreeNet's state_dict, in its order."""
        return list(self._keys)

    def gather_tensors(self, local: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Collect named tensors from their owner ranks at the root (collective).

        ``local``: on each rank, tensors named by full-TreeNet state keys this rank owns (its weights, or e.g.
        its optimizer's momentum buffer per parameter name). Returns on the root every rank's entries on the
        CPU, in state-key order; ``{}`` elsewhere."""
        wrong = [k for k in local if self._owner.get(k) != self.rank]
        if wrong:
            raise KeyError(f"gather_tensors: keys {wrong[:3]} are not held by rank {self.rank}")
        device, root = self._device(), self.placement.root_rank
        if not self.is_root:
            send_named(local, self._keys, self._ranks[root], device, self.group)
            return {}
        got = {k: v.detach().to("cpu", copy=True) for k, v in local.items()}
        for r in range(self.world_size):
            if r != root:
                got.update(recv_named(self._keys, self._ranks[r], device, self.group))
        return {k: got[k] for k in self._keys if k in got}

    def scatter_tensors(
        self, full: Mapping[str, torch.Tensor] | None, *, complete: bool = False
    ) -> dict[str, torch.Tensor]:
        """The inverse of :meth:`gather_tensors` (collective): ``full`` on the root (None elsewhere); returns
        on each rank the entries it owns, on the CPU. ``complete``: every state key must be present. The root
        checks the keys before anything is sent, so a wrong dict fails on every rank instead of leaving them
        waiting."""
        device, root = self._device(), self.placement.root_rank
        ok = torch.ones(1, dtype=torch.int32, device=device)
        problem = None
        if self.is_root:
            if full is None:
                problem = "the root was given no tensors (None)"
            else:
                unknown = [k for k in full if k not in self._owner]
                missing = [k for k in self._keys if k not in full] if complete else []
                if unknown:
                    problem = f"unknown keys {unknown[:3]} (not in this TreeNet's state_dict)"
                elif missing:
                    problem = f"missing keys {missing[:3]}{' ...' if len(missing) > 3 else ''}"
            if problem is not None:
                ok.zero_()
        with collective("checking the tensors to distribute"):
            dist.broadcast(ok, src=self._ranks[root], group=self.group)
        if not int(ok.item()):
            raise KeyError(
                f"scatter_tensors: {problem}"
                if problem
                else f"scatter_tensors: the root (rank {root}) refused the tensors; see its error"
            )
        if not self.is_root:
            return recv_named(self._keys, self._ranks[root], device, self.group)
        assert full is not None  # the root refused None above
        for r in range(self.world_size):
            if r != root:
                send_named(
                    {k: v for k, v in full.items() if self._owner[k] == r},
                    self._keys,
                    self._ranks[r],
                    device,
                    self.group,
                )
        return {k: v.detach().to("cpu", copy=True) for k, v in full.items() if self._owner[k] == root}

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The complete TreeNet state_dict (same keys as ``tree.state_dict()``, CPU tensors) on the root;
        ``{}`` on the other ranks. Collective."""
        return self.gather_tensors(self.state_dict())

    def load_full_state_dict(self, state: Mapping[str, torch.Tensor] | None) -> None:
        """Load a complete TreeNet state_dict given on the root (None elsewhere): each rank takes its part.
        Collective."""
        self.load_state_dict(self.scatter_tensors(state, complete=True), strict=True)
