"""What a built TreeNet says about its members one by one: :class:`MemberViews`, the part of
:class:`~mheads.tree.treenet.TreeNet` that reads its tree of :class:`~mheads.tree.node.TreeNode` s member by
member. Each member's root-to-leaf path (``paths``); the check that member 0, run as the tree runs it,
reproduces the base network (``check_cut``); a member as a standalone base network sharing the tree's weights
(``member``: the path's layers as one ``nn.Sequential``, :class:`Chosen` for a base whose output is a dict or
a tuple, the traced segments stitched back into one graph, or a base's own untraced cut joined back under its
names, :class:`~mheads.tree.parts.JoinedParts`); the layers every member shares
(``shared_layers``); and parameter counts (``param_counts``)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.fx as fx
from torch import nn

from mheads.tree.build import SplitSpec
from mheads.tree.cut import pick, stitch
from mheads.tree.node import TreeNode
from mheads.tree.parts import CutPart, JoinedParts
from mheads.tree.traced import ModeGraphModule

__all__ = ["Chosen", "MemberViews"]


class MemberViews(nn.Module):
    """The member-by-member methods of :class:`~mheads.tree.treenet.TreeNet` (its base class; it reads the
    attributes the TreeNet sets when it is built)."""

    root: TreeNode
    _graph: dict[bool, fx.Graph] | None
    num_members: int
    split: SplitSpec
    model_name: str
    output: Any
    cut_check: str | None

    @torch.no_grad()
    def check_cut(self, reference: nn.Module, example: torch.Tensor | Sequence[int]) -> str:
        """Refuse a cut that does not reproduce the base: member 0 (built from ``reference``'s weights), run
        as the tree runs it, must give ``reference(example)`` within ``64 x eps(dtype) x max |output|`` (a
        traced graph may reorder float operations). Runs in eval mode on a batch of at least 2 (BatchNorm
        statistics untouched), then restores modes. Returns (and keeps in ``self.cut_check``) what it
        compared."""
        # A private generator: the probe must not move the global random state of the caller.
        x = (
            example
            if isinstance(example, torch.Tensor)
            else torch.randn(
                *((max(2, example[0]), *example[1:]) if len(example) else example),
                generator=torch.Generator().manual_seed(0),
            )
        )
        if isinstance(x, torch.Tensor) and x.ndim >= 1 and x.shape[0] == 1:
            x = torch.cat([x, x.flip(-1) if x.ndim >= 2 else x])  # two different examples where it can
        modes = {m: m.training for m in (*self.modules(), *reference.modules())}
        try:
            self.eval()
            reference.eval()
            want = pick(reference(x.clone()), self.output, self.model_name)
            h = x.clone()
            for node in self.paths()[0]:
                h = node.layers(h)
            got = self.paths()[0][-1].finish(h)
        finally:
            for m, training in modes.items():
                m.training = training
        what = (
            f"member 0 of the cut at {self.split!r} against {self.model_name}.forward in eval mode on a "
            f"{tuple(x.shape)} probe batch"
        )
        if not isinstance(got, torch.Tensor) or not isinstance(want, torch.Tensor) or got.shape != want.shape:
            shape = lambda t: tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__  # noqa: E731
            raise ValueError(
                f"split: {what}: output {shape(got)} instead of {shape(want)}; use split=None "
                "or TreeNet.from_parts"
            )
        finite = want[torch.isfinite(want)] if want.is_floating_point() else want[:0]
        scale = float(finite.abs().max()) if finite.numel() else 0.0
        tol = 64 * torch.finfo(want.dtype).eps * scale if want.is_floating_point() else 0.0
        same = got.double() == want.double()  # equal infinities agree (a -inf class mask); NaN never does
        diff = (
            float(torch.where(same, 0.0, (got.double() - want.double()).abs()).max()) if want.numel() else 0.0
        )
        if not diff <= tol:
            raise ValueError(
                f"split: {what}: max |difference| {diff:.3g} above the tolerance {tol:.3g} "
                f"(64 x {want.dtype} eps x max |output| {scale:.3g}): its forward is not what "
                "torch.fx traced (Python control flow on tensor values or attributes is frozen "
                "at tracing); use split=None or TreeNet.from_parts"
            )
        self.cut_check = f"{what}: max |difference| {diff:.3g} <= tolerance {tol:.3g}"
        return self.cut_check

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

    def member(self, m: int) -> nn.Module:
        """Member ``m`` as a standalone base network ``(B, ...) -> (B, C)``, sharing this TreeNet's weights;
        its ``state_dict`` keys are the base network's own (a member file loads into the base)."""
        if not 0 <= m < self.num_members:
            raise ValueError(f"member: got {m!r}; expected 0..{self.num_members - 1}")
        path = self.paths()[m]
        if self._graph is not None:
            member = stitch(_segments(path), self._graph)
            member.training = self.training  # its graph follows its own flag (its layers share the tree's)
            return member
        parts = [node.layers for node in path if not node.is_identity]
        if all(isinstance(part, CutPart) for part in parts):  # a base's own cut: its keys (tree.parts)
            return JoinedParts(parts)
        if path[-1].output is not None:
            return Chosen(parts[0] if len(parts) == 1 else nn.Sequential(*parts), path[-1])
        names = [n for p in parts if isinstance(p, nn.Sequential) for n, _ in p.named_children()]
        if not all(isinstance(p, nn.Sequential) for p in parts) or len(set(names)) != len(names):
            return parts[0] if len(parts) == 1 else nn.Sequential(*parts)
        seq = nn.Sequential()
        for node in path:
            for name, layer in node.layers.named_children():
                seq.add_module(name, layer)
        return seq

    def shared_layers(self) -> list[str]:
        """Names of the layers (module paths) that every member shares (the root's layers)."""
        if self._graph is not None:
            return list(
                dict.fromkeys(
                    str(n.target)
                    for g in _segments([self.root])[0].graphs()
                    for n in g.nodes
                    if n.op == "call_module"
                )
            )
        return [name for name, _ in self.root.layers.named_children()]

    def param_counts(self) -> dict:
        """Parameter counts: ``total`` (unique), ``shared`` (used by more than one member, counted once),
        ``per_member`` (each root-to-leaf path, a tied weight once), ``independent`` (M separate base
        networks) and ``ratio`` = total / independent. Parameters are told apart by identity, so a module or a
        weight the base uses on both sides of a cut counts once."""
        members = []
        for path in self.paths():
            seen: dict[int, int] = {}
            for node in path:
                for p in node.layers.parameters():
                    seen[id(p)] = p.numel()
            members.append(seen)
        uses: dict[int, int] = {}
        for seen in members:
            for k in seen:
                uses[k] = uses.get(k, 0) + 1
        sizes = {k: n for seen in members for k, n in seen.items()}
        total = sum(p.numel() for p in self.parameters())
        shared = sum(sizes[k] for k, c in uses.items() if c > 1)
        per_member = [sum(seen.values()) for seen in members]
        independent = sum(per_member)
        return {
            "total": total,
            "shared": shared,
            "per_member": per_member,
            "independent": independent,
            "ratio": total / independent if independent else 1.0,
        }


class Chosen(nn.Module):
    """A member whose base returns a dict or tuple, returning the chosen prediction; its ``state_dict`` and
    ``load_state_dict`` are the base's own (keys without a prefix)."""

    leaf: TreeNode  # kept out of the module registry (its layers are the net's)

    def __init__(self, net: nn.Module, leaf: TreeNode):
        super().__init__()
        self.net = net
        self.__dict__["leaf"] = leaf

    def forward(self, x):
        return self.leaf.finish(self.net(x))

    def state_dict(self, *args, **kwargs):
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)


def _segments(nodes: list[TreeNode]) -> list[ModeGraphModule]:
    """The layers of a traced tree's nodes, each a segment (:func:`mheads.tree.build.traced_tree` builds
    nothing else)."""
    out = []
    for node in nodes:
        if not isinstance(node.layers, ModeGraphModule):
            raise TypeError(
                f"TreeNet: a traced tree's node holds a {type(node.layers).__name__}, not a "
                "traced segment; this is a bug in mheads.tree (please report it)"
            )
        out.append(node.layers)
    return out
