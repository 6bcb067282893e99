"""Building a TreeNet's tree of :class:`~mheads.tree.node.TreeNode` s from its members' copies of the base, at
the split levels (see :mod:`mheads.tree.treenet`): a plain ``nn.Sequential`` is cut between its children, any
other base traced with ``torch.fx`` (:mod:`mheads.tree.cut_points`) and cut at its nodes
(:mod:`mheads.tree.cut`).

Each node's weights come from the copy of the first member under it, so a node shared by several members is
that member's part of the base.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch.fx as fx
from torch import nn

from mheads.core.checks import check_int
from mheads.tree.cut import CutError, analyse, cut_graphs, segment, why_not
from mheads.tree.node import TreeNode
from mheads.tree.sharing import canonical_names, share_with_ancestors, used_objects
from mheads.tree.traced import ModeGraphModule

__all__ = [
    "STOCHASTIC_LAYERS",
    "SplitSpec",
    "check_levels",
    "normalize_split",
    "sequential_tree",
    "traced_tree",
]

SplitSpec = Union[None, str, Sequence[tuple]]

# Layers that draw randomness in training mode: after a split they go to the branches, so that each member
# draws its own (every dropout variant subclasses _DropoutNd: Dropout, Dropout1d/2d/3d, AlphaDropout,
# FeatureAlphaDropout).
STOCHASTIC_LAYERS: tuple[type[nn.Module], ...] = (nn.modules.dropout._DropoutNd, nn.RReLU)


def _is_stochastic(module: nn.Module) -> bool:
    return any(isinstance(m, STOCHASTIC_LAYERS) for m in module.modules())


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def normalize_split(split: SplitSpec, num_members: int) -> list[tuple]:
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
            raise ValueError(
                f"split[{i}]: got {level!r}; expected a (layer name, number of branches) pair"
            ) from None
        levels.append((name, n))
    if not levels:
        raise ValueError("split: got an empty list; use None for independent members or name a layer")
    return levels


def check_levels(levels: list[tuple], num_members: int) -> None:
    """Every level branches at least once, only the first at the input, into ``num_members`` leaves."""
    leaves = 1
    for i, (name, n) in enumerate(levels):
        check_int(f"split: level {i}'s number of branches", n, 1)
        leaves *= n
        if name is None and i > 0:
            raise ValueError(
                f"split: level {i} has no layer name; only the first level may branch at the input"
            )
    if leaves != num_members:
        desc = " x ".join(str(n) for _, n in levels)
        raise ValueError(
            f"split: the tree has {desc} = {leaves} leaves "
            f"but members is {num_members}; the number of leaves must equal M"
        )


def sequential_tree(copies: list[nn.Module], levels: list[tuple], layer_names: list[str]) -> TreeNode:
    """The tree of an ``nn.Sequential`` base cut between its children ``layer_names`` at each level."""
    cuts = _cut_points(copies[0], levels, layer_names)
    return _sequential_node(copies, levels, layer_names, 0, 0, len(copies), cuts)


def _cut_points(net: nn.Module, levels: list[tuple], names: list[str]) -> list[int]:
    """For each level, the index just past the last shared layer (including absorbed parameter-free
    layers)."""
    layers = list(net.named_children())
    cuts, prev = [], 0
    for i, (name, n) in enumerate(levels):
        if name is None:
            cuts.append(0)
            continue
        idx = names.index(name) + 1
        # Parameter-free deterministic layers right after the split follow the shared side
        # (see mheads.tree.treenet's docstring).
        while idx < len(layers) and not _has_params(layers[idx][1]) and not _is_stochastic(layers[idx][1]):
            idx += 1
        if idx <= prev and i > 0:
            raise ValueError(
                f"split: level {i} ({name!r}) does not come after the previous split point; "
                "list split layers in network order"
            )
        cuts.append(idx)
        prev = idx
    return cuts


def _sequential_node(
    copies: list[nn.Module],
    levels: list[tuple],
    names: list[str],
    level: int,
    lo: int,
    hi: int,
    cuts: list[int],
) -> TreeNode:
    """Node covering members [lo, hi) at depth ``level``; its weights come from member ``lo``'s copy."""
    start = cuts[level - 1] if level > 0 else 0
    stop = cuts[level] if level < len(cuts) else len(names)
    src = dict(copies[lo].named_children())
    seq = nn.Sequential()
    for name in names[start:stop]:
        seq.add_module(name, src[name])
    if level == len(cuts):
        return TreeNode(seq)
    n = levels[level][1]
    size = (hi - lo) // n
    kids = [
        _sequential_node(copies, levels, names, level + 1, lo + j * size, lo + (j + 1) * size, cuts)
        for j in range(n)
    ]
    return TreeNode(seq, kids)


def traced_tree(
    copies: list[nn.Module], levels: list[tuple], output, model_name: str
) -> tuple[TreeNode, dict[bool, fx.Graph]]:
    """Trace member 0's copy (both modes, see :mod:`mheads.tree.cut_points`), cut its graphs at the split
    points and give every member's copy the same segments. Returns the tree and, per mode (training or not),
    the whole model's graph returning the chosen prediction (what a standalone member runs)."""
    points = [name for name, _ in levels]
    found = analyse(copies[0])
    for p in points:
        if p not in found.points:
            raise CutError(why_not(found, p))
    order = {n: i for i, n in enumerate(found.graphs[True].nodes)}
    cuts = [found.cuts[True][p] for p in points]
    if [order[c] for c in cuts] != sorted(order[c] for c in cuts) or len(set(cuts)) != len(cuts):
        raise CutError(
            f"split: {points} are not in the order forward calls them (or two of them cut at "
            "the same place); list split points in that order"
        )
    graphs = {
        mode: cut_graphs(found.graphs[mode], [found.cuts[mode][p] for p in points], copies[0], output)
        for mode in {True, False}
        if mode or found.graphs[False] is not found.graphs[True]
    }
    graphs.setdefault(False, graphs[True])
    whole = {mode: _whole(found.graphs[mode], copies[0], output) for mode in (True, False)}
    if found.graphs[False] is found.graphs[True]:
        whole[False] = whole[True]
    for net in copies[1:]:  # constants fx stored on the traced copy (plain tensor attributes)
        for g in whole.values():
            for n in g.nodes:
                if n.op == "get_attr" and not _has_path(net, n.target) and "." not in n.target:
                    setattr(net, n.target, getattr(copies[0], n.target))
    segments = [
        [
            segment(net, {mode: graphs[mode][level] for mode in (True, False)}, f"{model_name}Segment")
            for level in range(len(points) + 1)
        ]
        for net in copies
    ]
    canon = canonical_names(copies[0])
    return _graph_node(segments, levels, model_name, canon, {}, 0, 0, len(copies)), whole


def _graph_node(
    segments: list[list[ModeGraphModule]],
    levels: list[tuple],
    model_name: str,
    canon: dict,
    inherited: dict,
    level: int,
    lo: int,
    hi: int,
) -> TreeNode:
    """Like :func:`_sequential_node` for a traced base: segment ``level`` of member ``lo``'s cut copy, using
    the objects of its ancestors wherever the base uses one object on both sides of a cut (a module called
    again, a tied weight): modules used in the trunk stay shared."""
    part = segments[lo][level]
    share_with_ancestors(part, canon, inherited)
    if level == len(levels):
        return TreeNode(part, (), None, model_name)
    below = {**inherited, **used_objects(part, canon)}
    n = levels[level][1]
    size = (hi - lo) // n
    kids = [
        _graph_node(segments, levels, model_name, canon, below, level + 1, lo + j * size, lo + (j + 1) * size)
        for j in range(n)
    ]
    return TreeNode(part, kids, None, model_name)


def _has_path(module: nn.Module, target: str) -> bool:
    for p in target.split("."):
        if not hasattr(module, p):
            return False
        module = getattr(module, p)
    return True


def _whole(graph: fx.Graph, owner: nn.Module, output) -> fx.Graph:
    """The whole model's graph returning the chosen prediction (what a standalone member runs)."""
    return cut_graphs(graph, [], owner, output)[0]
