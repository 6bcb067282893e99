"""Traced segments that behave like the model they were cut from, in both modes and with in-place ops.

- :class:`ModeGraphModule`: an ``fx.GraphModule`` that runs its training-mode graph while ``self.training``
  and its evaluation-mode graph otherwise. fx freezes Python that reads ``self.training`` at tracing
  (``F.dropout(x, p, self.training)``, ``if self.training: ...``), so a model is traced in both modes and a
  segment keeps both graphs (one when they agree).
- :func:`reads_training`: whether a module class's ``forward`` reads ``self.training``; such modules
  (timm's DropPath) are kept whole as leaves, so they keep their own run-time mode check.
- :func:`clone_input_if_mutated`: the tensor at a cut is shared by every branch; a branch whose graph writes
  into it in place (``nn.ReLU(inplace=True)`` right after the split module, ``x.add_(p)``) would change what
  its siblings read and break the trunk's backward, so such a branch starts from its own copy.
"""

from __future__ import annotations

import functools
import inspect
import operator
import re

import torch.fx as fx
from torch import nn
from torch.fx.graph_module import _forward_from_src

__all__ = ["ModeGraphModule", "clone_input_if_mutated", "mutated_input", "reads_training"]

_READS_TRAINING = re.compile(r"\bself\s*\.\s*training\b")


def reads_training(cls: type) -> bool:
    """True when ``cls.forward`` (its own source) reads ``self.training``."""
    return _reads_training(cls)


# Cached per class. Behind a plain function because typeshed's lru_cache wants Hashable arguments, which the
# class object of an nn.Module (its __hash__ is an instance method) does not satisfy for the checker.
@functools.lru_cache(maxsize=None)
def _reads_training(cls: type) -> bool:
    fwd = cls.__dict__.get("forward")
    if fwd is None or cls.__module__.startswith("torch."):
        return False
    try:
        return bool(_READS_TRAINING.search(inspect.getsource(fwd)))
    except (OSError, TypeError):  # no source (built in a REPL): trace it; both-mode tracing still applies
        return False


class ModeGraphModule(fx.GraphModule):
    """``graph`` while training, ``eval_graph`` (if given) in evaluation mode; both share this module's
    submodules and parameters. ``state_dict`` keys are the targets' paths, as for any ``GraphModule``."""

    def __init__(
        self,
        root: nn.Module,
        graph: fx.Graph,
        eval_graph: fx.Graph | None = None,
        class_name: str = "GraphModule",
    ):
        self.__dict__["_eval_graph"] = eval_graph
        super().__init__(root, graph, class_name)
        real = dict(root.named_buffers()) if isinstance(root, nn.Module) else {}
        for g in self.graphs():
            for n in g.nodes:
                if n.op in ("call_module", "get_attr") and not _has(self, n.target):
                    fx.graph_module._copy_attr(root, self, n.target)
                if n.op == "get_attr" and n.target not in real and type(root) is not nn.Module:
                    *path, name = n.target.split(".")  # a constant fx stored, not a buffer of the base
                    owner = self.get_submodule(".".join(path))
                    if name in owner._buffers:
                        owner._non_persistent_buffers_set.add(name)

    def graphs(self) -> list[fx.Graph]:
        """The training graph, then the evaluation graph when it differs."""
        eg = self.__dict__.get("_eval_graph")
        return [self.graph] if eg is None else [self.graph, eg]

    def recompile(self):
        code = super().recompile()
        eg = self.__dict__.get("_eval_graph")
        if eg is not None:
            cls = type(self)
            train_forward = cls.forward
            ev = eg.python_code(root_module="self")
            eval_forward = _forward_from_src(ev.src, ev.globals, {})

            def forward(self, *args, **kwargs):
                return (train_forward if self.training else eval_forward)(self, *args, **kwargs)

            cls.forward = forward
        return code

    def _deepcopy_init(self):
        def init(res, fake_mod, graph):
            ModeGraphModule.__init__(
                res, fake_mod, graph, fake_mod.__dict__.get("_eval_graph"), type(self).__name__
            )
            res._non_persistent_buffers_set |= fake_mod.__dict__.get("_non_persistent_buffers_set", set())

        return init


def _has(module: nn.Module, target: str) -> bool:
    for p in target.split("."):
        if not hasattr(module, p):
            return False
        module = getattr(module, p)
    return True


# --- in-place writes into a segment's input --------------------------------------------------------------
_VIEWS = {
    "view",
    "view_as",
    "reshape",
    "reshape_as",
    "flatten",
    "unflatten",
    "transpose",
    "permute",
    "t",
    "squeeze",
    "unsqueeze",
    "expand",
    "expand_as",
    "narrow",
    "select",
    "contiguous",
    "to",
    "type",
    "detach",
    "chunk",
    "split",
    "unbind",
    "movedim",
    "moveaxis",
    "swapaxes",
    "swapdims",
    "as_strided",
    "diagonal",
    "unfold",
    "float",
    "double",
    "half",
    "bfloat16",
    "real",
    "imag",
    "view_as_real",
    "__getitem__",
    "getitem",
    "T",
    "mT",
    "H",
    "mH",
    "align_as",
    "rename",
    "tensor_split",
    "hsplit",
    "vsplit",
    "dsplit",
    "split_with_sizes",
    "alias",
    "identity",
    "clone_if_needed",
}
_INPLACE_FUNCTIONS = {
    operator.setitem,
    operator.iadd,
    operator.isub,
    operator.imul,
    operator.itruediv,
    operator.ifloordiv,
    operator.imod,
    operator.ipow,
    operator.iand,
    operator.ior,
    operator.ixor,
    operator.ilshift,
    operator.irshift,
    operator.imatmul,
}


def _name(target) -> str:
    return target if isinstance(target, str) else getattr(target, "__name__", "")


def _may_alias(node: fx.Node, owner: nn.Module | None) -> bool:
    """Whether ``node``'s result may share memory with its first argument."""
    if node.op == "call_module":
        if owner is None:
            return True
        m = owner.get_submodule(str(node.target))  # a call_module target is the module's path
        # layers that always make a new tensor; anything else (Identity, Dropout in eval, a custom leaf) may
        # return its input
        return not isinstance(
            m,
            (
                nn.modules.conv._ConvNd,
                nn.Linear,
                nn.modules.batchnorm._NormBase,
                nn.LayerNorm,
                nn.GroupNorm,
                nn.Embedding,
                nn.modules.pooling._MaxPoolNd,
                nn.modules.pooling._AvgPoolNd,
                nn.modules.pooling._AdaptiveAvgPoolNd,
                nn.modules.pooling._AdaptiveMaxPoolNd,
            ),
        ) or getattr(m, "inplace", False)
    name = _name(node.target)
    if name.endswith("_") and not name.endswith("__"):
        return True  # an in-place op returns the tensor it wrote
    return name in _VIEWS or node.kwargs.get("inplace") is True or node.target in _INPLACE_FUNCTIONS


def _writes(node: fx.Node, owner: nn.Module | None) -> bool:
    """Whether ``node`` writes into its first argument (a module of unknown ``owner``: assume it may)."""
    if node.op == "call_module":
        return owner is None or getattr(owner.get_submodule(str(node.target)), "inplace", False) is True
    name = _name(node.target)
    return (
        (name.endswith("_") and not name.endswith("__"))
        or node.kwargs.get("inplace") is True
        or node.target in _INPLACE_FUNCTIONS
    )


def mutated_input(graph: fx.Graph, owner: nn.Module | None = None) -> fx.Node | None:
    """The first node of ``graph`` that writes into its input (or a view of it), or None."""
    x = next(n for n in graph.nodes if n.op == "placeholder")
    aliases = {x}
    for n in graph.nodes:
        if n.op not in ("call_module", "call_method", "call_function") or not n.args:
            continue
        if not isinstance(n.args[0], fx.Node) or n.args[0] not in aliases:
            continue
        if _writes(n, owner):
            return n
        if _may_alias(n, owner):
            aliases.add(n)
    return None


def clone_input_if_mutated(graph: fx.Graph, owner: nn.Module | None = None) -> bool:
    """Make ``graph`` start from ``x.clone()`` when some op writes into its input ``x``; True if it did."""
    if mutated_input(graph, owner) is None:
        return False
    x = next(n for n in graph.nodes if n.op == "placeholder")
    with graph.inserting_after(x):
        copy = graph.call_method("clone", (x,))
    x.replace_all_uses_with(copy, delete_user_cb=lambda u: u is not copy)
    return True
