"""A base network that says where it is cut, so that no tracing is needed: the cut for models ``torch.fx``
cannot trace (a Hugging Face model called as ``model(**batch)``, shape unpacking, data-dependent Python).

A base offers one such cut with two members of its class:

- ``untraced_cut``: the split name (a module path of the base) that means this cut;
- ``cut_parts()``: ``(trunk, branch)``, two :class:`CutPart` modules holding the base's own submodules under
  the base's own names, such that ``branch(trunk(x))`` is ``base(x)``.

``TreeNet(base, M, split=base.untraced_cut)`` then shares member 0's trunk (run as a black box, once per
batch) and gives every member its own branch (:func:`parts_tree`), whatever the trunk's ``forward`` does.
:class:`mheads.tasks.heads.HeadedBase` offers it: the whole base shared, a task head per member.
A member's part joined again (:class:`JoinedParts`, what ``TreeNet.member`` returns) has the base's
``state_dict`` keys, so a member file loads into the base.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from torch import nn

from mheads.tree.node import TreeNode

__all__ = ["CutPart", "JoinedParts", "is_untraced_cut", "parts_tree"]


class CutPart(nn.Module):
    """A part of a base cut by :func:`parts_tree`: its children are the base's own modules, under the names
    the base gives them (so that the parts of a member joined have the base's ``state_dict`` keys)."""


class JoinedParts(nn.Module):
    """A member's :class:`CutPart` s as one network: ``parts[-1](...parts[0](x))``; its children are the
    parts' children (the base's names, so its ``state_dict`` is the base's)."""

    def __init__(self, parts: list[nn.Module]):
        super().__init__()
        for part in parts:
            for name, child in part.named_children():
                if name in self._modules:
                    raise ValueError(f"parts: two parts hold a module named {name!r}; a cut gives each once")
                self.add_module(name, child)
        self.__dict__["parts"] = list(parts)  # not registered: their modules are this one's children

    def forward(self, x: Any) -> Any:
        for part in self.__dict__["parts"]:
            x = part(x)
        return x


def is_untraced_cut(base: nn.Module, levels: list[tuple]) -> bool:
    """Whether ``levels`` (one ``(name, branches)`` per level) is the one cut ``base`` offers without
    tracing (its class's ``untraced_cut``)."""
    cut = getattr(type(base), "untraced_cut", None)
    return cut is not None and len(levels) == 1 and levels[0][0] == cut


class _CutsItself(Protocol):
    def cut_parts(self) -> tuple[nn.Module, nn.Module]: ...


def parts_tree(copies: list[nn.Module]) -> TreeNode:
    """The tree of bases that cut themselves (:func:`is_untraced_cut`): member 0's trunk shared (a node's
    weights come from the first member under it, as for every cut), each member's own branch a leaf."""
    kind = type(copies[0])
    if not callable(getattr(kind, "cut_parts", None)):
        raise TypeError(
            f"cut_parts: {kind.__name__} offers untraced_cut {getattr(kind, 'untraced_cut', None)!r} but no "
            "cut_parts() method; expected both (mheads.tree.parts)"
        )
    parts = [cast(_CutsItself, net).cut_parts() for net in copies]
    for trunk, branch in parts:
        if not (isinstance(trunk, CutPart) and isinstance(branch, CutPart)):
            raise TypeError(
                f"cut_parts: {type(copies[0]).__name__} returned {type(trunk).__name__} and "
                f"{type(branch).__name__}; expected two CutPart modules (mheads.tree.parts)"
            )
    return TreeNode(parts[0][0], [TreeNode(branch) for _, branch in parts], None, type(copies[0]).__name__)
