"""Fused execution of any identical sibling branches with ``torch.func``: the G branches' parameters and
buffers stacked along a new leading dimension, one ``vmap`` of ``functional_call`` over them.

This serves the branches the per-layer fused ops of :mod:`mheads.tree.fused` do not cover: traced segments
of any model (a ResNet block, a ViT's blocks, timm code), custom modules, layers without a fused op. Under
``vmap`` a convolution with batched weights runs as one grouped convolution and a linear layer as one batched
matrix multiply, so the G members cost one call per op instead of G.

- Parameters are stacked with ``torch.stack`` at forward time (not ``torch.func.stack_module_state``, which
  detaches), so gradients reach the TreeNet's own parameters.
- Buffers (BatchNorm running statistics) are stacked too; in training mode the updated copies are written
  back to each member's buffers after the call, as the members' own calls would have left them.
- Randomness: ``randomness="different"``, so dropout, DropPath and the like draw independently per member
  (from a different stream than the loop: equally distributed, not identical, results in training mode).

Branches are identical when every submodule has the same type (a traced segment: the same code), the same
plain configuration attributes and parameters of the same names, shapes and dtypes, and none has hooks. A
branch ``vmap`` cannot run (Python reading a tensor's value, an op without a batching rule) falls back to the
loop, said once in a warning.
"""

from __future__ import annotations

import warnings
import weakref
from typing import TYPE_CHECKING

import torch
import torch.fx as fx
from torch import nn
from torch.func import functional_call, vmap

from mheads.tree.traced import ModeGraphModule

if TYPE_CHECKING:
    from mheads.tree.node import TreeNode

__all__ = ["module_signature", "run_vmapped"]

_SCALARS = (int, float, bool, str, tuple, type(None))
_FAILED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)


def module_signature(node: "TreeNode") -> tuple | None:
    """A hashable description of a subtree (its layers and, recursively, its branches), or None when some
    module has hooks (they must run, so the subtree runs as modules)."""
    parts = []
    for m in (node, node.layers, node.branches):
        if _hooked(m):
            return None
    for name, sub in node.layers.named_modules(remove_duplicate=False):
        if _hooked(sub):
            return None
        kind: object
        if isinstance(sub, fx.GraphModule):
            graphs = sub.graphs() if isinstance(sub, ModeGraphModule) else [sub.graph]
            kind = tuple(g.python_code(root_module="self").src for g in graphs)
        else:
            kind = type(sub)
        cfg = tuple(
            sorted((k, v) for k, v in vars(sub).items() if not k.startswith("_") and isinstance(v, _SCALARS))
        )
        parts.append((name, kind, cfg))
    tensors = tuple(
        (n, tuple(t.shape), t.dtype, t.device)
        for n, t in (
            *node.layers.named_parameters(remove_duplicate=False),
            *node.layers.named_buffers(remove_duplicate=False),
        )
    )
    kids = []
    for b in node.branches:
        sig = module_signature(b)
        if sig is None:
            return None
        kids.append(sig)
    return tuple(parts), tensors, (node.output,), tuple(kids)


def _not_vmaps(err: Exception) -> bool:
    """Whether ``err`` is not vmap's: torch's SIGCHLD handler raises a dead DataLoader worker's error wherever
    the main process is, here too; it must end the run, not switch these branches to the loop."""
    return isinstance(err, RuntimeError) and str(err).startswith("DataLoader worker")


def run_vmapped(nodes: list["TreeNode"], xs: torch.Tensor) -> torch.Tensor | None:
    """G identical nodes on their inputs ``xs: (G, B, ...)`` -> their leaves' outputs ``(leaves, B, ...)``,
    depth-first; None when ``vmap`` cannot run them (the caller loops)."""
    template = nodes[0].layers
    if template in _FAILED:
        return None
    layers = [n.layers for n in nodes]
    pnames = [n for n, _ in template.named_parameters()]
    bnames = [n for n, _ in template.named_buffers()]
    params = {n: torch.stack([m.get_parameter(n) for m in layers]) for n in pnames}
    buffers = {n: torch.stack([m.get_buffer(n) for m in layers]) for n in bnames}

    def call(p, b, x):
        return functional_call(template, (p, b), (x,))

    try:
        with warnings.catch_warnings():  # an op without a batching rule loops inside vmap: still correct
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
            ys = vmap(call, randomness="different")(params, buffers, xs)
    except Exception as err:  # an op or Python vmap cannot batch: the loop, said once
        if _not_vmaps(err):
            raise
        _FAILED.add(template)
        first = " ".join(str(err).split())[:200]
        warnings.warn(
            f"exec_mode 'fused': {type(template).__name__} branches cannot run under "
            f"torch.func.vmap ({type(err).__name__}: {first}); running the member loop for them",
            UserWarning,
            stacklevel=4,
        )
        return None
    if template.training and bnames:
        with torch.no_grad():
            for n in bnames:
                for g, m in enumerate(layers):
                    m.get_buffer(n).copy_(buffers[n][g])
    kids = len(nodes[0].branches)
    if kids == 0:
        return nodes[0].finish(ys)
    children = [k for n in nodes for k in n.branches]  # depth-first member order
    inputs = ys.repeat_interleave(kids, dim=0)
    out = run_vmapped(children, inputs)
    if out is None:
        out = torch.cat([torch.stack(c(inputs[i])) for i, c in enumerate(children)])
    return out
