"""Cutting a traced ``nn.Module`` into trunk and branch graphs at its split points, and putting a member back
together.

The split points and the graphs come from :mod:`mheads.tree.cut_points` (:func:`analyse`); this module does
the graph surgery. The graph is cut right after each split point's value; residual additions, functional ops
and flattening inside ``forward`` stay where they are, so the segments chained reproduce ``forward``
(:func:`cut_graphs`, :func:`cut_module`). A segment runs as a module sharing the model's submodules
(:func:`segment`); :func:`stitch` makes one member of a TreeNet a standalone network again. A base whose
``forward`` returns a dict or a tuple has its prediction chosen by key or index (:func:`select_output`).
Every name of :mod:`mheads.tree.cut_points` is importable from here too.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
from torch import nn

from mheads.tree.cut_points import (
    Analysis,
    CutError,
    analyse,
    split_points,
    why_not,
)
from mheads.tree.traced import ModeGraphModule, clone_input_if_mutated

# isort: split
# Importable from this module before it was split by concept: kept so that no caller's import breaks.
from mheads.tree.cut_points import (  # noqa: F401
    _CACHE,
    _TORCH_DIR,
    EXPLICIT_PARTS,
    _code,
    _defaults,
    _drop_fixed,
    _key,
    _library_leaves,
    _Points,
    _points,
    _trace,
    _Tracer,
    _where,
)
from mheads.tree.traced import reads_training  # noqa: F401

__all__ = [
    "Analysis",
    "CutError",
    "analyse",
    "cut_graphs",
    "cut_module",
    "select_output",
    "split_points",
    "stitch",
]


# --- choosing the prediction --------------------------------------------------------------------------------
def describe_output(value) -> str:
    if isinstance(value, dict):
        return f"a dict with keys {', '.join(repr(k) for k in value)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def pick(value, output, model_name: str):
    """``value[output]`` with a one-line error naming the key or index and what the output holds."""
    if output is None:
        if isinstance(value, (dict, tuple, list)):
            hint = "a key" if isinstance(value, dict) else "an index"
            raise ValueError(
                f"output: {model_name} returns {describe_output(value)}; pass "
                f"output=<{hint}> to TreeNet (model.output in a config) to choose the "
                "prediction"
            )
        return value
    if isinstance(value, dict):
        if output not in value:
            raise ValueError(f"output: got {output!r}; {model_name} returns {describe_output(value)}")
        return value[output]
    if isinstance(value, (tuple, list)):
        if not isinstance(output, int) or isinstance(output, bool) or not -len(value) <= output < len(value):
            raise ValueError(
                f"output: got {output!r}; {model_name} returns {describe_output(value)}, so an "
                f"index 0..{len(value) - 1} is expected"
            )
        return value[output]
    if hasattr(value, "__getitem__") and not isinstance(value, torch.Tensor):  # e.g. a ModelOutput object
        return value[output]
    raise ValueError(
        f"output: got {output!r}; {model_name} returns {describe_output(value)}, not a dict "
        "or a tuple to choose from; leave output unset"
    )


def select_output(graph: fx.Graph, output, model_name: str) -> fx.Graph:
    """A copy of ``graph`` whose output is the prediction ``output`` chooses (a key or an index; None: the
    output itself, which must then be a single value)."""
    g = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    old = next(n for n in graph.nodes if n.op == "output")
    for n in graph.nodes:
        if n.op != "output":
            env[n] = g.node_copy(n, lambda z: env[z])
    value = fx.node.map_arg(old.args[0], lambda z: env[z])
    if isinstance(value, fx.Node):
        if output is not None:  # a dict or tuple computed by a call: choose at run time
            value = g.call_function(operator.getitem, (value, output))
    else:
        value = pick(value, output, model_name)
        if not isinstance(value, fx.Node):
            raise ValueError(
                f"output: {model_name}'s prediction {output!r} is {describe_output(value)}, "
                "not a tensor; choose a tensor with output="
            )
    g.output(value)
    return g


# --- cutting ------------------------------------------------------------------------------------------------
def cut_graphs(graph: fx.Graph, cuts: list[fx.Node], owner: nn.Module, output=None) -> list[fx.Graph]:
    """``graph`` (already cut-checked: see :func:`analyse`) cut after each of ``cuts`` (in node order):
    ``len(cuts) + 1`` graphs, each of one input, whose chained calls compute ``graph``. A segment after the
    first whose ops write into its input (an in-place op on the shared tensor) starts with a copy of it
    (``owner``: the traced model, whose modules say whether they work in place). The last segment returns
    the prediction ``output`` chooses (see :func:`select_output`)."""
    nodes = list(graph.nodes)
    order = {n: i for i, n in enumerate(nodes)}
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise CutError(f"split: forward takes {len(inputs)} inputs; a TreeNet base takes one tensor")
    output, chosen = next(n for n in nodes if n.op == "output"), output
    out: list[fx.Graph] = []
    start = inputs[0]
    for end in [*cuts, None]:
        g = fx.Graph()
        env = {start: g.placeholder("x")}
        hi = order[end] + 1 if end is not None else order[output]
        for n in nodes[order[start] + 1 : hi]:
            if n.op == "placeholder":
                continue
            for a in n.all_input_nodes:
                if a not in env:  # a parameter read again after the cut (analyse refused anything else)
                    env[a] = g.node_copy(a, lambda z: env[z])
            env[n] = g.node_copy(n, lambda z: env[z])
        if end is not None:
            g.output(env[end])
        else:
            value = output.args[0]
            if not isinstance(value, fx.Node):
                value = pick(value, chosen, type(owner).__name__)
                if not isinstance(value, fx.Node):
                    raise ValueError(
                        f"output: {type(owner).__name__}'s prediction {chosen!r} is "
                        f"{describe_output(value)}, not a tensor; choose a tensor with output="
                    )
                chosen = None
            if value not in env:
                raise CutError(
                    f"split: the model's output {value.name!r} is computed before the last split point"
                )
            value = env[value]
            if chosen is not None:  # a dict or tuple computed by a call: choose at run time
                value = g.call_function(operator.getitem, (value, chosen))
            g.output(value)
        if out:
            clone_input_if_mutated(g, owner)
        out.append(g)
        start = end
    return out


def segment(model: nn.Module, graphs: dict[bool, fx.Graph], class_name: str = "Segment") -> ModeGraphModule:
    """One segment of ``model`` as a module running ``graphs[self.training]``, sharing ``model``'s
    submodules and parameters."""
    return ModeGraphModule(
        model,
        _fresh(graphs[True]),
        _fresh(graphs[False]) if graphs[False] is not graphs[True] else None,
        class_name,
    )


def _fresh(graph: fx.Graph) -> fx.Graph:
    g = fx.Graph()
    out = g.graph_copy(graph, {})
    g.output(out)
    return g


def stitch(parts: list[ModeGraphModule], graphs: dict[bool, fx.Graph]) -> ModeGraphModule:
    """One module running ``graphs`` (the whole model) with the submodules and parameters of ``parts``: a
    member of a TreeNet as a standalone network whose ``state_dict`` keys are the base's own. Never writes
    into the parts' modules."""
    owned: dict[str, object] = {}
    for part in parts:
        for g in {id(g): g for g in part.graphs()}.values():
            for n in g.nodes:
                if n.op in ("call_module", "get_attr"):
                    obj = _get(part, n.target)
                    if owned.setdefault(n.target, obj) is not obj:
                        raise CutError(
                            f"split: {n.target!r} is used by two segments as different objects; "
                            "this is a bug in mheads.tree (please report it)"
                        )
    root = nn.Module()
    for target in sorted(owned, key=lambda t: -t.count(".")):  # deepest first: never write into a real module
        _assign(root, target, owned[target])
    for target, obj in owned.items():
        if _get(root, target) is not obj:  # a module used whole by one segment and in part by another
            raise CutError(
                f"split: {target!r} resolves to two different objects in the member's segments; "
                "this is a bug in mheads.tree (please report it)"
            )
    member = ModeGraphModule(
        root,
        _fresh(graphs[True]),
        _fresh(graphs[False]) if graphs[False] is not graphs[True] else None,
        "Member",
    )
    for part in parts:  # constants fx stored stay out of the member's state_dict, as in the segments
        for name, owner in part.named_modules():
            for b in owner._non_persistent_buffers_set:
                path = f"{name}.{b}" if name else b
                if _has_path(member, path):
                    *pre, last = path.split(".")
                    member.get_submodule(".".join(pre))._non_persistent_buffers_set.add(last)
    return member


def _has_path(module: nn.Module, target: str) -> bool:
    try:
        _get(module, target)
        return True
    except AttributeError:
        return False


def _get(module: nn.Module, target: str):
    for p in target.split("."):
        module = getattr(module, p)
    return module


def _assign(root: nn.Module, target: str, obj) -> None:
    *path, name = target.split(".")
    m = root
    for p in path:
        nxt = m._modules.get(p)
        if nxt is None:
            nxt = nn.Module()
            m.add_module(p, nxt)
        m = nxt
    if isinstance(obj, nn.Module):
        m._modules[name] = obj
    elif isinstance(obj, nn.Parameter):
        m.register_parameter(name, obj)
    elif isinstance(obj, torch.Tensor):
        m.register_buffer(name, obj)
    else:
        setattr(m, name, obj)


def cut_module(model: nn.Module, points: list[str]) -> list[ModeGraphModule]:
    """``model`` cut after each module of ``points`` (in call order): ``len(points) + 1`` segments whose
    chained calls equal ``model(x)``, sharing ``model``'s submodules and parameters."""
    found = analyse(model)
    for p in points:
        if p not in found.points:
            raise CutError(why_not(found, p))
    graphs = {
        mode: cut_graphs(found.graphs[mode], [found.cuts[mode][p] for p in points], model)
        for mode in (True, False)
    }
    return [segment(model, {mode: graphs[mode][i] for mode in (True, False)}) for i in range(len(points) + 1)]
