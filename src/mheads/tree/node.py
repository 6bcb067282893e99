"""A node of a TreeNet's tree: a part of the base network (``layers``) and the child branches that read its
output; the leaves, depth first, are the members (:class:`~mheads.tree.treenet.TreeNet`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence, overload

import torch
from torch import nn

from mheads.tree.cut import pick

__all__ = ["TreeNode"]

if TYPE_CHECKING:

    class _Branches(nn.ModuleList):
        """What the checker sees of ``TreeNode.branches``: a ``ModuleList`` holding TreeNodes only (at run
        time it is a plain ``nn.ModuleList``)."""

        def __iter__(self) -> Iterator[TreeNode]: ...

        @overload
        def __getitem__(self, idx: slice) -> nn.ModuleList: ...

        @overload
        def __getitem__(self, idx: int) -> TreeNode: ...

        def __getitem__(self, idx: int | slice) -> TreeNode | nn.ModuleList: ...
else:
    _Branches = nn.ModuleList


class TreeNode(nn.Module):
    """A part of the base network (``layers``) followed by zero or more child branches."""

    def __init__(
        self,
        layers: nn.Module,
        branches: Sequence["TreeNode"] = (),
        output=None,
        model_name: str = "the base",
    ):
        super().__init__()
        self.layers = layers
        self.branches = _Branches(branches)
        self.output = output  # a leaf's choice from a dict or tuple output (not state: a plain attribute)
        self.model_name = model_name

    def finish(self, h):
        """A leaf's prediction from its layers' output ``h``: ``h[output]`` when ``output`` is set; a dict or
        tuple without it is refused naming its keys."""
        if self.output is None and isinstance(h, torch.Tensor):
            return h
        return pick(h, self.output, self.model_name)

    @property
    def is_identity(self) -> bool:
        """True when the node computes nothing (an empty root: the independent ensemble)."""
        return isinstance(self.layers, nn.Sequential) and len(self.layers) == 0

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Returns the outputs of every leaf under this node, depth-first: a list of ``(B, C)``."""
        h = self.layers(x)
        if len(self.branches) == 0:
            return [self.finish(h)]
        out: list[torch.Tensor] = []
        for branch in self.branches:
            out.extend(branch(h))
        return out

    def num_leaves(self) -> int:
        return 1 if len(self.branches) == 0 else sum(b.num_leaves() for b in self.branches)
