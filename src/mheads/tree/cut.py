"""Cutting any ``nn.Module`` at the output of named submodules with ``torch.fx``: trunk and branch graphs.

A split point is a module path (``"layer2"``, ``"layer3.1"``, ``"features.8"``). The model is traced with the
split modules kept as leaves (one call each in the graph), and the graph is cut right after each split
module's call: a segment runs from the previous cut's output to this cut's output. Residual additions,
functional ops and flattening inside ``forward`` stay where they are, so the segments chained reproduce
``forward`` exactly. A cut is valid only when everything after it depends on the model's input solely through
the split module's output (a skip
connection jumping over the cut makes it invalid: the error names the node that reaches back).
"""

from __future__ import annotations

import torch
import torch.fx as fx
from torch import nn

__all__ = ["CutError", "cut_module", "split_points", "trace"]


class CutError(ValueError):
    """A model that cannot be traced or cut where asked; the message names the call or node, and the way
    out."""


EXPLICIT_PARTS = ("build the TreeNet from explicit parts instead: TreeNet.from_parts(trunk, branch_factory, "
                  "M), with a trunk module and a function returning one branch module")


class _Tracer(fx.Tracer):
    def __init__(self, leaves: set[str]):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or super().is_leaf_module(m, qualname)


def trace(model: nn.Module, leaves: set[str] = frozenset()) -> fx.Graph:
    """The fx graph of ``model.forward`` with the modules ``leaves`` kept as single calls."""
    try:
        return _Tracer(set(leaves)).trace(model)
    except Exception as err:  # fx raises TraceError, TypeError, NotImplementedError, ... naming the call
        first = " ".join(str(err).split())[:300]
        raise CutError(f"split: {type(model).__name__} cannot be traced by torch.fx ({type(err).__name__}: "
                       f"{first}); {EXPLICIT_PARTS}") from None


def split_points(model: nn.Module) -> list[str]:
    """Module paths where ``model`` can be cut, in ``named_modules`` order: every submodule called once whose
    output alone carries the computation on (residual blocks and stages qualify; a layer inside a residual
    block, whose input a skip connection also reads, does not)."""
    out = []
    for name, _ in model.named_modules():
        if not name:
            continue
        graph = trace(model, {name})
        nodes = list(graph.nodes)
        order = {n: i for i, n in enumerate(nodes)}
        calls = [n for n in nodes if n.op == "call_module" and n.target == name]
        if len(calls) != 1:
            continue
        later = [n for n in nodes if order[n] > order[calls[0]] and n.op != "output"]
        output = next(n for n in nodes if n.op == "output")
        if all(_reaches_only_through(n, calls[0], order) for n in later + [output]):
            out.append(name)
    return out


def _reaches_only_through(node: fx.Node, cut: fx.Node, order: dict) -> bool:
    return all(a is cut or order[a] > order[cut] or a.op == "get_attr" for a in node.all_input_nodes)


def cut_module(model: nn.Module, points: list[str]) -> list[fx.GraphModule]:
    """``model`` cut after each module of ``points`` (in call order): ``len(points) + 1`` segments whose
    chained calls equal ``model(x)``. Each segment holds (shares) the submodules and parameters it uses."""
    modules = dict(model.named_modules())
    for p in points:
        if p not in modules or not p:
            raise CutError(f"split: {p!r} is not a layer of the base network ({type(model).__name__}); valid "
                           f"layer names are: {', '.join(split_points(model))}")
    graph = trace(model, set(points))
    nodes = list(graph.nodes)
    order = {n: i for i, n in enumerate(nodes)}
    cuts = []
    for p in points:
        calls = [n for n in nodes if n.op == "call_module" and n.target == p]
        if len(calls) != 1:
            raise CutError(f"split: {p!r} is called {len(calls)} times in {type(model).__name__}.forward; a "
                           "split point must be called exactly once")
        cuts.append(calls[0])
    if [order[c] for c in cuts] != sorted(order[c] for c in cuts):
        raise CutError(f"split: {points} are not in the order forward calls them; list split points in that "
                       "order")
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise CutError(f"split: {type(model).__name__}.forward takes {len(inputs)} inputs; a TreeNet base "
                       "takes one tensor")
    output = next(n for n in nodes if n.op == "output")
    segments, start, prev = [], inputs[0], None
    for end in cuts + [None]:
        g = fx.Graph()
        env = {start if prev is None else prev: g.placeholder("x")}
        lo = order[start] if prev is None else order[prev]
        hi = order[end] if end is not None else order[output]
        for n in nodes[lo + 1:hi + (1 if end is not None else 0)]:
            if n.op in ("placeholder", "output"):
                continue
            for a in n.all_input_nodes:
                if a not in env:
                    if a.op != "get_attr":
                        where = points[len(segments) - 1] if segments else "the input"
                        raise CutError(f"split: cutting after {where!r} is not possible: {n.name!r} "
                                       f"({n.format_node()}) uses {a.name!r} from before the cut (a skip "
                                       "connection across it); choose a split point whose output alone "
                                       "carries the computation on, e.g. one of: "
                                       f"{', '.join(split_points(model))}")
                    env[a] = g.node_copy(a, lambda z: env[z])
            env[n] = g.node_copy(n, lambda z: env[z])
        result = env[end] if end is not None else _map_output(output.args[0], env)
        g.output(result)
        segments.append(fx.GraphModule(model, g, class_name=f"{type(model).__name__}Segment"))
        prev = end
    return segments


def _map_output(value, env):
    if isinstance(value, fx.Node):
        if value not in env:
            raise CutError(f"split: the model's output {value.name!r} is computed before the last split "
                           "point")
        return env[value]
    if isinstance(value, (tuple, list)):
        return type(value)(_map_output(v, env) for v in value)
    return value


def stitch(segments: list[fx.GraphModule], model_graph: fx.Graph) -> fx.GraphModule:
    """One module running ``model_graph`` with the submodules and parameters of ``segments``: a member of a
    TreeNet as a standalone network whose ``state_dict`` keys are the base's own."""
    owned = {}
    for seg in segments:
        for n in seg.graph.nodes:
            if n.op == "call_module":
                owned[n.target] = seg.get_submodule(n.target)
            elif n.op == "get_attr":
                owned[n.target] = _get_attr(seg, n.target)
    return fx.GraphModule(owned, model_graph, class_name="Member")


def _get_attr(module: nn.Module, target: str) -> torch.Tensor:
    *path, name = target.split(".")
    for p in path:
        module = getattr(module, p)
    return getattr(module, name)
