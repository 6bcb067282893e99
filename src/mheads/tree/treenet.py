"""TreeNets (paper section 5): M members that share their first layers and branch at named split points.

A TreeNet is a tree of :class:`TreeNode` s. Each node holds a run of consecutive named layers of the base
network and its child branches; the leaves, in depth-first order, are members ``0..M-1``. The spectrum of the
paper:

- ``split=None``: an empty root with M branches, each a whole base network (the independent ensemble);
- ``split="conv1"``: conv1 is shared, M branches hold the rest (split names are the *last shared layer*);
- ``split=<last layer>``: everything shared, M empty leaves (the single-model end; all members are equal);
- ``split=[("conv1", 2), ("conv2", 2)]``: a multi-level, "balanced binary" tree with 2 x 2 = 4 leaves.

Parameter-free layers (ReLU, pooling, flatten, LRN) directly after a split layer stay on the *shared* side:
they are deterministic, so computing them once per batch gives the same result as computing them per branch.
Stochastic layers are the exception (every dropout variant, RReLU, or a container holding one): they go to the
branches, so that each member draws its own mask.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence, Union

import torch
from torch import nn

from mheads.core.checks import check_int
from mheads.core.seeding import member_init_seeds
from mheads.tree.fused import check_exec_mode, fused_forward, resolve_exec_mode

SplitSpec = Union[None, str, Sequence[tuple]]
BaseSpec = Union[nn.Module, Callable[[], nn.Module]]


class TreeNode(nn.Module):
    """A run of named layers followed by zero or more child branches."""

    def __init__(self, layers: nn.Sequential, branches: Sequence["TreeNode"] = ()):
        super().__init__()
        self.layers = layers
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Returns the outputs of every leaf under this node, depth-first: a list of ``(B, C)``."""
        h = self.layers(x)
        if len(self.branches) == 0:
            return [h]
        out: list[torch.Tensor] = []
        for branch in self.branches:
            out.extend(branch(h))
        return out

    def num_leaves(self) -> int:
        return 1 if len(self.branches) == 0 else sum(b.num_leaves() for b in self.branches)


# Layers that draw randomness in training mode: after a split they go to the branches, so that each member
# draws its own (every dropout variant subclasses _DropoutNd: Dropout, Dropout1d/2d/3d, AlphaDropout,
# FeatureAlphaDropout).
STOCHASTIC_LAYERS: tuple[type[nn.Module], ...] = (nn.modules.dropout._DropoutNd, nn.RReLU)


def _is_stochastic(module: nn.Module) -> bool:
    return any(isinstance(m, STOCHASTIC_LAYERS) for m in module.modules())


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _normalize_split(split: SplitSpec, num_members: int) -> list[tuple]:
    """Turn any split spec into a list of (layer name or None, branch count)."""
    if split is None:
        return [(None, num_members)]
    if isinstance(split, str):
        return [(split, num_members)]
    levels = []
    for i, level in enumerate(split):
        if isinstance(level, str):
            raise ValueError(f"split[{i}]: got {level!r}; a multi-level split lists (layer, branches) pairs")
        try:
            name, n = level
        except (TypeError, ValueError):
            raise ValueError(f"split[{i}]: got {level!r}; "
                             "expected a (layer name, number of branches) pair") from None
        levels.append((name, n))
    if not levels:
        raise ValueError("split: got an empty list; use None for independent members or name a layer")
    return levels


class TreeNet(nn.Module):
    """An ensemble of M members sharing a trunk, from any base network.

    Args:
        base: an ``nn.Sequential`` (or any module whose ordered named children are its layers), or a
            zero-argument factory returning one. With a factory each member's copy is built under its own
            seed, so the base's own initialization (e.g. Caffe's Gaussian fillers) is kept; with a module,
            member 0 keeps its weights and the others are re-initialized with each layer's
            ``reset_parameters()``.
        num_members: M >= 1.
        split: see the module docstring.
        seed: the run seed; member seeds derive from it (ignored when ``seeds`` is given).
        seeds: an explicit initialization seed per member.
        same_init: start every member from the same weights (the paper's Table 6 experiment).
        exec_mode: ``"loop"`` runs the branches one after another; ``"fused"`` runs structurally identical
            sibling branches as one grouped op per layer (:mod:`mheads.tree.fused`, same results up to float
            rounding); ``"auto"`` picks per device type what the benchmark measured faster. Also a settable
            attribute.
    """

    def __init__(self, base: BaseSpec, num_members: int, split: SplitSpec = None, *, seed: int = 0,
                 seeds: Sequence[int] | None = None, same_init: bool = False, exec_mode: str = "loop"):
        super().__init__()
        self.exec_mode = exec_mode
        check_int("members", num_members, 1)
        if seeds is None:
            seeds = member_init_seeds(seed, num_members)
        seeds = [int(s) for s in seeds]
        if len(seeds) != num_members:
            raise ValueError(f"seeds: got {len(seeds)} seeds for {num_members} members; give one per member")
        if same_init:
            seeds = [seeds[0]] * num_members
        self.num_members = num_members
        self.seeds = seeds
        self.split = split
        copies = self._build_copies(base, seeds)
        self.layer_names = [name for name, _ in copies[0].named_children()]
        if not self.layer_names:
            raise ValueError("base: the network has no named layers (children) to split")
        self.levels = _normalize_split(split, num_members)
        cuts = self._cut_points(copies[0])
        self.root = self._build_node(copies, 0, 0, num_members, cuts)

    # --- construction ---------------------------------------------------------------------------------------
    @staticmethod
    def _build_copies(base: BaseSpec, seeds: list[int]) -> list[nn.Module]:
        copies: list[nn.Module] = []
        built: dict[int, nn.Module] = {}
        for m, s in enumerate(seeds):
            if s in built:  # identical seeds give identical weights: copy instead of rebuilding
                copies.append(copy.deepcopy(built[s]))
                continue
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                if isinstance(base, nn.Module):
                    net = copy.deepcopy(base)
                    if m > 0:
                        for mod in net.modules():
                            if hasattr(mod, "reset_parameters") and mod is not net:
                                mod.reset_parameters()
                elif callable(base):
                    net = base()
                    if not isinstance(net, nn.Module):
                        raise ValueError(f"base: the factory returned {type(net).__name__}; "
                                         "expected an nn.Module")
                else:
                    raise ValueError(f"base: got {type(base).__name__}; expected an nn.Module or a factory")
            built[s] = net
            copies.append(net)
        return copies

    def _cut_points(self, net: nn.Module) -> list[int]:
        """For each level, the index just past the last shared layer (including absorbed parameter-free
        layers)."""
        layers = list(net.named_children())
        names = self.layer_names
        cuts, prev, leaves = [], 0, 1
        for i, (name, n) in enumerate(self.levels):
            check_int(f"split: level {i}'s number of branches", n, 1)
            leaves *= n
            if name is None:
                if i > 0:
                    raise ValueError(f"split: level {i} has no layer name; "
                                     "only the first level may branch at the input")
                cuts.append(0)
                continue
            if name not in names:
                raise ValueError(f"split: {name!r} is not a layer of the base network; "
                                 f"valid layer names are: {', '.join(names)}")
            idx = names.index(name) + 1
            # Parameter-free deterministic layers right after the split follow the shared side
            # (see module doc).
            while (idx < len(layers) and not _has_params(layers[idx][1])
                   and not _is_stochastic(layers[idx][1])):
                idx += 1
            if idx <= prev and i > 0:
                raise ValueError(f"split: level {i} ({name!r}) does not come after the previous split point; "
                                 "list split layers in network order")
            cuts.append(idx)
            prev = idx
        if leaves != self.num_members:
            desc = " x ".join(str(n) for _, n in self.levels)
            raise ValueError(f"split: the tree has {desc} = {leaves} leaves "
                             f"but members is {self.num_members}; the number of leaves must equal M")
        return cuts

    def _build_node(self, copies: list[nn.Module], level: int, lo: int, hi: int, cuts: list[int]) -> TreeNode:
        """Node covering members [lo, hi) at depth ``level``; its weights come from member ``lo``'s copy."""
        start = cuts[level - 1] if level > 0 else 0
        stop = cuts[level] if level < len(cuts) else len(self.layer_names)
        src = dict(copies[lo].named_children())
        seq = nn.Sequential()
        for name in self.layer_names[start:stop]:
            seq.add_module(name, src[name])
        if level == len(cuts):
            return TreeNode(seq)
        n = self.levels[level][1]
        size = (hi - lo) // n
        kids = [self._build_node(copies, level + 1, lo + j * size, lo + (j + 1) * size, cuts)
                for j in range(n)]
        return TreeNode(seq, kids)

    # --- use ------------------------------------------------------------------------------------------------
    @property
    def exec_mode(self) -> str:
        """``"loop"``, ``"fused"`` or ``"auto"`` (see the class docstring); not part of the state_dict."""
        return self._exec_mode

    @exec_mode.setter
    def exec_mode(self, mode: str) -> None:
        self._exec_mode = check_exec_mode(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, ...) -> member logits (M, B, C); each shared layer runs once per batch."""
        if resolve_exec_mode(self._exec_mode, x.device) == "fused":
            return fused_forward(self.root, x)
        return torch.stack(self.root(x), dim=0)

    def paths(self) -> list[list[TreeNode]]:
        """For each member, the nodes on its root-to-leaf path."""
        out: list[list[TreeNode]] = []

        def walk(node: TreeNode, path: list[TreeNode]) -> None:
            path = path + [node]
            if len(node.branches) == 0:
                out.append(path)
            for b in node.branches:
                walk(b, path)

        walk(self.root, [])
        return out

    def member(self, m: int) -> nn.Sequential:
        """Member ``m`` as a standalone base network ``(B, ...) -> (B, C)``, sharing this TreeNet's
        weights."""
        if not 0 <= m < self.num_members:
            raise ValueError(f"member: got {m!r}; expected 0..{self.num_members - 1}")
        seq = nn.Sequential()
        for node in self.paths()[m]:
            for name, layer in node.layers.named_children():
                seq.add_module(name, layer)
        return seq

    def shared_layers(self) -> list[str]:
        """Names of the layers that every member shares (the root's layers)."""
        return [name for name, _ in self.root.layers.named_children()]

    def param_counts(self) -> dict:
        """Parameter counts: ``total`` (unique), ``shared`` (in nodes used by more than one member),
        ``per_member`` (each root-to-leaf path), ``independent`` (M separate base networks) and
        ``ratio`` = total / independent."""
        def count(node: TreeNode) -> int:
            return sum(p.numel() for p in node.layers.parameters())

        total = sum(p.numel() for p in self.parameters())
        shared = 0
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node.num_leaves() > 1:
                shared += count(node)
            stack.extend(node.branches)
        per_member = [sum(count(n) for n in path) for path in self.paths()]
        independent = sum(per_member)
        return {"total": total, "shared": shared, "per_member": per_member, "independent": independent,
                "ratio": total / independent if independent else 1.0}
