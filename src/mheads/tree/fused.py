"""Fused execution of TreeNet members: structurally identical sibling branches run as one op per layer.

The loop path (:class:`~mheads.tree.node.TreeNode`) calls each branch in turn. The fused path runs the G
sibling branches of a node together, layer by layer:

- ``Conv2d``: one grouped convolution over the channel-concatenated member inputs, with the members' weights
  concatenated along the output channels (``groups = G x conv.groups``). While several members still read the
  same input (right after a split) no input copy is made: the data group feeds all its members' filters at
  once (with a shared trunk output that is one plain convolution with G x C_out filters).
- ``Linear``: one batched matrix multiply (``baddbmm``) over the members' stacked weights.
- ``BatchNorm2d``: one normalization over the members' concatenated channels (statistics are per channel, so
  this is exact); the members' running statistics are updated as their own calls would.
- ReLU, pooling, flatten, LRN, dropout: applied once to the stacked tensor. Dropout draws one independent mask
  per element, so each member still gets its own mask, but from a different random stream than the loop: in
  training mode with dropout the two modes give equally distributed, not identical, results.

Parameters are concatenated at forward time, so gradients flow to the TreeNet's own parameters;
``state_dict``, optimizers and checkpoints see no difference. Fused layers do not call the member modules.
Identical branches these ops do not cover (a layer type not in :data:`FUSABLE_LAYERS`, a traced segment of
any model, a custom module) run as one ``torch.func.vmap`` over the members' stacked parameters and buffers
(:mod:`mheads.tree.vmapped`; BatchNorm statistics written back, randomness drawn per member). A node falls
back to the loop (for its own branches; deeper nodes may still fuse) when its branches differ in structure,
carry module hooks, or hold an op that ``vmap`` cannot batch (said once, as a warning).

Whether fusing pays depends on the device: :data:`AUTO_EXEC` records what ``benchmarks/throughput.py``
measured.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from mheads.tree.vmapped import module_signature, run_vmapped

if TYPE_CHECKING:  # treenet.py imports this module
    from mheads.tree.node import TreeNode

EXEC_MODES = ("loop", "fused", "auto")

# What ``exec_mode="auto"`` runs on each device type.
# cpu: benchmarks/throughput.py, 2-core AMD EPYC (family 25, AVX2+FMA), torch 2.13, CIFAR10-Quick, M=4,
#   batch 100, channels_last, five runs: loop time / fused time = 0.81-0.94 for independent members and
#   0.93-1.04 sharing conv1 (training), 0.74 and 0.78-0.83 at inference (batch 1000): oneDNN's grouped
#   convolutions are slower than separate ones, so the loop stays the CPU default.
# cuda: benchmarks/results/h200/throughput.txt, one NVIDIA H200, torch 2.11 + CUDA 13, same workload:
#   loop time / fused time = 1.42 for independent members (6.4 vs 4.5 ms per step) and 1.49 sharing conv1
#   (5.8 vs 3.9 ms): kernel launches bound this small network there, and fusing issues one launch per layer
#   for all members.
AUTO_EXEC = {"cpu": "loop", "cuda": "fused"}


class ExecModeError(ValueError):
    """Raised for an execution mode other than loop / fused / auto."""


def check_exec_mode(mode: object) -> str:
    if mode not in EXEC_MODES:
        raise ExecModeError(f"exec_mode: got {mode!r}; expected one of {', '.join(EXEC_MODES)}")
    return mode


def resolve_exec_mode(mode: str, device: torch.device | str) -> str:
    """``"loop"`` or ``"fused"``: ``auto`` looks the device type up in :data:`AUTO_EXEC`
    (unknown types: loop)."""
    check_exec_mode(mode)
    if mode != "auto":
        return mode
    return AUTO_EXEC.get(torch.device(device).type, "loop")


# --- the stacked state --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Group:
    """G = gd x rep members' activations in one tensor.

    ``stacked=False``: ``t`` is ``(B, gd*C, ...)`` (channel-grouped, what grouped convolutions read);
    ``stacked=True``: ``t`` is ``(gd, B, ...)`` (what batched matmuls read). Each of the gd data groups serves
    ``rep`` consecutive members that have not diverged yet (a shared input is gd=1, rep=G).
    """

    t: torch.Tensor
    stacked: bool
    gd: int
    rep: int


def _to_stacked(s: _Group) -> _Group:
    if s.stacked:
        return s
    b, ch = s.t.shape[:2]
    t = s.t.reshape(b, s.gd, ch // s.gd, *s.t.shape[2:]).movedim(1, 0)
    return replace(s, t=t, stacked=True)


def _to_grouped(s: _Group) -> _Group:
    if not s.stacked:
        return s
    t = s.t.movedim(0, 1)
    t = t.reshape(t.shape[0], -1, *t.shape[3:])
    return replace(s, t=t, stacked=False)


def _materialize(s: _Group) -> _Group:
    """rep -> 1: give every member its own copy (needed before per-member randomness or per-member groups)."""
    if s.rep == 1:
        return s
    if s.stacked:
        t = s.t.unsqueeze(1).expand(s.gd, s.rep, *s.t.shape[1:]).reshape(s.gd * s.rep, *s.t.shape[1:])
    else:
        b, ch = s.t.shape[:2]
        c = ch // s.gd
        rest = s.t.shape[2:]
        t = (
            s.t.reshape(b, s.gd, 1, c, *rest)
            .expand(b, s.gd, s.rep, c, *rest)
            .reshape(b, s.gd * s.rep * c, *rest)
        )
    return _Group(t, s.stacked, s.gd * s.rep, 1)


# --- one fused op per layer type ----------------------------------------------------------------------------
def _conv2d(layers: list[nn.Conv2d], s: _Group) -> _Group:
    c = layers[0]
    if c.groups > 1:  # the input split of a grouped conv is per member: each member needs its own input block
        s = _materialize(s)
    s = _to_grouped(s)
    w = torch.cat([layer.weight for layer in layers])  # (G*C_out, C_in/groups, kh, kw), member-major
    biases = _all_or_none([layer.bias for layer in layers])
    b = torch.cat(biases) if biases is not None else None
    t = F.conv2d(s.t, w, b, c.stride, c.padding, c.dilation, s.gd * c.groups)
    return _Group(t, False, s.gd * s.rep, 1)


def _linear(layers: list[nn.Linear], s: _Group) -> _Group:
    s = _to_stacked(s)
    f_out, f_in = layers[0].weight.shape
    lead = s.t.shape[1:-1]
    x = s.t.reshape(s.gd, -1, f_in)  # (gd, N, F_in)
    # Members sharing a data group are concatenated along F_out: (gd, rep*F_out, F_in)
    w = torch.stack([layer.weight for layer in layers]).reshape(s.gd, s.rep * f_out, f_in).transpose(1, 2)
    if layers[0].bias is not None:
        bias = torch.stack([layer.bias for layer in layers]).reshape(s.gd, 1, s.rep * f_out)
        y = torch.baddbmm(bias, x, w)
    else:
        y = torch.bmm(x, w)
    n = x.shape[1]
    if s.rep > 1:
        y = y.reshape(s.gd, n, s.rep, f_out).transpose(1, 2)
    y = y.reshape(s.gd * s.rep, *lead, f_out)
    return _Group(y, True, s.gd * s.rep, 1)


def _relu(layers: list[nn.ReLU], s: _Group) -> _Group:
    return replace(s, t=F.relu(s.t))  # never in place: a shared input may be the trunk's output


def _identity(layers: list[nn.Module], s: _Group) -> _Group:
    return s


def _dropout(layers: list[nn.Dropout], s: _Group) -> _Group:
    d = layers[0]
    if not d.training or d.p == 0:
        return s
    s = _materialize(s)  # one mask per member
    return replace(s, t=F.dropout(s.t, d.p, True))


def _batch_norm(layers: list[nn.modules.batchnorm._BatchNorm], s: _Group) -> _Group:
    """One normalization over the members' channels: each member's statistics and affine parameters are its
    own (per channel), so concatenating them along the channels is exact; running statistics are written
    back."""
    bn = layers[0]
    s = _to_grouped(_materialize(s))  # each member normalizes its own copy with its own parameters
    track = bn.training and bn.track_running_stats
    factor = 0.0 if bn.momentum is None else bn.momentum
    counts = _all_or_none([layer.num_batches_tracked for layer in layers])
    if track and counts is not None:
        for count in counts:
            count.add_(1)
        factor = 1.0 / float(counts[0]) if bn.momentum is None else bn.momentum
    use_batch = bn.training or bn.running_mean is None
    keep = not bn.training or bn.track_running_stats
    means = _all_or_none([layer.running_mean for layer in layers])
    variances = _all_or_none([layer.running_var for layer in layers])
    mean = var = None
    if keep and means is not None and variances is not None:
        mean, var = torch.cat(means), torch.cat(variances)
    weights = _all_or_none([layer.weight for layer in layers]) if bn.affine else None
    biases = _all_or_none([layer.bias for layer in layers]) if bn.affine else None
    w = torch.cat(weights) if weights is not None else None
    b = torch.cat(biases) if biases is not None else None
    t = F.batch_norm(s.t, mean, var, w, b, use_batch, factor, bn.eps)
    if track and means is not None and variances is not None and mean is not None and var is not None:
        # F.batch_norm updated the concatenated copies: hand each member its part
        with torch.no_grad():
            for old_m, old_v, m, v in zip(means, variances, mean.chunk(len(layers)), var.chunk(len(layers))):
                old_m.copy_(m)
                old_v.copy_(v)
    return replace(s, t=t)


def _all_or_none(tensors: list[torch.Tensor | None]) -> list[torch.Tensor] | None:
    """Every member's tensor (a bias, a running statistic), or None when the layers have none (members fuse
    only when their layers agree on this: :func:`_layer_signature`, :func:`_layer_ok`)."""
    present = [t for t in tensors if t is not None]
    return present if present and len(present) == len(tensors) else None


_Layer = TypeVar("_Layer", bound=nn.Module)


def _spatial(fn: Callable[[_Layer, torch.Tensor], torch.Tensor]) -> Callable[[list[_Layer], _Group], _Group]:
    """A per-channel op on (B, C, H, W): runs on the channel-grouped tensor as is."""

    def op(layers: list[_Layer], s: _Group) -> _Group:
        s = _to_grouped(s)
        return replace(s, t=fn(layers[0], s.t))

    return op


def _max_pool(m: nn.MaxPool2d, t: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(t, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode)


def _avg_pool(m: nn.AvgPool2d, t: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(
        t, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override
    )


def _adaptive_avg_pool(m: nn.AdaptiveAvgPool2d, t: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(t, m.output_size)


def _adaptive_max_pool(m: nn.AdaptiveMaxPool2d, t: torch.Tensor) -> torch.Tensor:
    # None in output_size (keep that size) is valid at run time, as nn.AdaptiveMaxPool2d.forward passes it;
    # torch's annotation of the function lists ints only.
    return F.adaptive_max_pool2d(t, m.output_size)  # type: ignore[arg-type]


def _lrn(layers: list[nn.LocalResponseNorm], s: _Group) -> _Group:
    # LRN mixes neighbouring channels: fold the members into the batch so windows stop at member boundaries.
    n = layers[0]
    s = _to_grouped(s)
    b, ch = s.t.shape[:2]
    x = s.t.reshape(b * s.gd, ch // s.gd, *s.t.shape[2:])
    y = F.local_response_norm(x, n.size, n.alpha, n.beta, n.k)
    return replace(s, t=y.reshape(s.t.shape))


def _flatten(layers: list[nn.Flatten], s: _Group) -> _Group:
    s = _to_stacked(s)
    return replace(s, t=s.t.flatten(2))


_OPS: dict[type, Callable[[list, _Group], _Group]] = {
    nn.Conv2d: _conv2d,
    nn.Linear: _linear,
    nn.ReLU: _relu,
    nn.Identity: _identity,
    nn.Dropout: _dropout,
    nn.BatchNorm2d: _batch_norm,
    nn.MaxPool2d: _spatial(_max_pool),
    nn.AvgPool2d: _spatial(_avg_pool),
    nn.AdaptiveAvgPool2d: _spatial(_adaptive_avg_pool),
    nn.AdaptiveMaxPool2d: _spatial(_adaptive_max_pool),
    nn.LocalResponseNorm: _lrn,
    nn.Flatten: _flatten,
}

#: Layer types the fused path runs (exact types: a subclass may change ``forward``).
FUSABLE_LAYERS = tuple(_OPS)


def _hooked(module: nn.Module) -> bool:
    # Fused layers never call the member modules, so their hooks would silently not run: such nodes use the
    # loop.
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
    )


def _layer_ok(layer: nn.Module) -> bool:
    if type(layer) not in _OPS or _hooked(layer):
        return False
    if isinstance(layer, nn.Conv2d):
        return layer.padding_mode == "zeros"
    if isinstance(layer, nn.Flatten):
        return layer.start_dim == 1 and layer.end_dim == -1
    if isinstance(layer, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        return not layer.return_indices
    if isinstance(layer, nn.BatchNorm2d):  # members must agree on the update rule to share one call
        return layer.track_running_stats == (layer.running_mean is not None)
    return True


_SCALARS = (int, float, bool, str, tuple, type(None))


def _layer_signature(layer: nn.Module) -> tuple:
    # torch layers keep their configuration (kernel_size, stride, p, ceil_mode, ...) as public plain
    # attributes.
    cfg = tuple(
        sorted((k, v) for k, v in vars(layer).items() if not k.startswith("_") and isinstance(v, _SCALARS))
    )
    params = tuple((n, tuple(p.shape), p.dtype, p.device) for n, p in layer.named_parameters())
    return type(layer), cfg, params


def _subtree_signature(node: "TreeNode") -> tuple | None:
    """A hashable description of a subtree's structure, or None if some layer cannot be fused."""
    if any(_hooked(m) for m in (node, node.layers, node.branches)) or type(node.layers) is not nn.Sequential:
        return None  # hooks must run; a traced segment (fx) or a whole custom module is not a list of layers
    layers = []
    for layer in node.layers:
        if not _layer_ok(layer):
            return None
        layers.append(_layer_signature(layer))
    kids = []
    for b in node.branches:
        sig = _subtree_signature(b)
        if sig is None:
            return None
        kids.append(sig)
    return tuple(layers), tuple(kids)


def _plan(root: "TreeNode") -> dict[int, str | bool]:
    """For each node (by id): how its branches run: ``"ops"`` (one fused op per layer), ``"vmap"`` (any
    identical branches, :mod:`mheads.tree.vmapped`) or False (the loop)."""
    plan: dict[int, str | bool] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        fuse: str | bool = False
        if len(node.branches) >= 2 and not _hooked(node.branches):
            sigs = [_subtree_signature(b) for b in node.branches]
            if sigs[0] is not None and all(s == sigs[0] for s in sigs):
                fuse = "ops"
            else:
                sigs = [module_signature(b) for b in node.branches]
                fuse = "vmap" if sigs[0] is not None and all(s == sigs[0] for s in sigs) else False
        plan[id(node)] = fuse
        stack.extend(node.branches)
    return plan


_WARNED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()
_PLANS: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, dict]]" = weakref.WeakKeyDictionary()


def _tree_key(root: nn.Module) -> tuple:
    # (identity, train flag, hooked) of every module: a plain stack walk, since this runs on every forward.
    out = []
    stack = [root]
    while stack:
        m = stack.pop()
        out.append((id(m), m.training, _hooked(m)))
        stack.extend(c for c in m._modules.values() if c is not None)
    return tuple(out)


def fusion_plan(root: "TreeNode") -> dict[int, str | bool]:
    """The cached plan for ``root``; re-made when a module in the tree was replaced, gained or lost a hook, or
    changed train/eval mode (a cheap check per forward)."""
    key = _tree_key(root)
    hit = _PLANS.get(root)
    if hit is None or hit[0] != key:
        hit = (key, _plan(root))
        _PLANS[root] = hit
    return hit[1]


# --- running ------------------------------------------------------------------------------------------------
def _run_group(nodes: list["TreeNode"], s: _Group) -> torch.Tensor:
    """G structurally identical nodes on state s (G = s.gd * s.rep) -> their leaves' outputs
    (leaves, B, ...)."""
    for layers in zip(*(node.layers for node in nodes)):
        s = _OPS[type(layers[0])](list(layers), s)
    n = len(nodes[0].branches)
    if n == 0:
        return _to_stacked(_materialize(s)).t
    kids = [kid for node in nodes for kid in node.branches]  # depth-first member order
    return _run_group(kids, replace(s, rep=s.rep * n))


def _leaves(node: "TreeNode", x: torch.Tensor, plan: dict) -> torch.Tensor:
    if _hooked(node):  # its hooks expect the node to be called: do so (the loop, from here down)
        return torch.stack(node(x))
    h = node.layers(x)
    if len(node.branches) == 0:
        return node.finish(h).unsqueeze(0)
    if plan[id(node)] == "ops":
        return _run_group(list(node.branches), _Group(h, False, 1, len(node.branches)))
    if plan[id(node)] == "vmap":
        out = run_vmapped(list(node.branches), h.expand(len(node.branches), *h.shape))
        if out is not None:
            return out
    return torch.cat([_leaves(b, h, plan) for b in node.branches])


def fused_forward(root: "TreeNode", x: torch.Tensor) -> torch.Tensor:
    """x: (B, ...) -> member logits (M, B, C), equal to ``torch.stack(root(x))`` up to float rounding.

    Each node's own layers run as modules (hooks fire); sibling branches run fused where :func:`fusion_plan`
    allows, else in a loop. A tree where nothing fuses says so once (a warning), rather than silently running
    the loop under the name of the fused mode.
    """
    plan = fusion_plan(root)
    if not any(plan.values()) and _has_siblings(root):
        if root not in _WARNED:
            _WARNED.add(root)
            warnings.warn(
                "exec_mode 'fused': no sibling branches of this TreeNet can be fused (they differ "
                "in structure or carry hooks); running the member loop",
                UserWarning,
                stacklevel=3,
            )
    return _leaves(root, x, plan)


def _has_siblings(root: "TreeNode") -> bool:
    """Whether some node of the tree has two branches or more (walks TreeNodes only, not the layers)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if len(node.branches) > 1:
            return True
        stack.extend(node.branches)
    return False


def fused_nodes(root: "TreeNode") -> int:
    """How many nodes run their branches fused (0: the fused mode is the loop for this tree)."""
    return sum(bool(v) for v in fusion_plan(root).values())
