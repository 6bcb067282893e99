"""Cutting any ``nn.Module`` at the output of named submodules with ``torch.fx``: trunk and branch graphs.

A split point is a module path (``"layer2"``, ``"layer3.1"``, ``"features.8"``). The model is traced once
per mode (training and evaluation, see :mod:`mheads.tree.traced`), every submodule traced through except the
leaves (``torch.nn`` layers, and modules whose ``forward`` reads ``self.training``, kept whole so that
DropPath and friends stay random in training and off in evaluation, drawn per member). Each node of the graph
records the module calls it was made in (``nn_module_stack``), so one trace finds every split point: a module
called once whose call hands exactly one value on, and after which nothing reads a value from before it (a
skip connection jumping over the cut makes it invalid: the error names the node that reaches back). The graph
is cut right after that value; residual additions, functional ops and flattening inside ``forward`` stay where
they are, so the segments chained reproduce ``forward``. Analyses are cached per model, so
:func:`split_points` traces a model twice, not once per module.
"""

from __future__ import annotations

import inspect
import operator
import sys
import traceback
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.fx as fx
from torch import nn

from mheads.tree.traced import ModeGraphModule, clone_input_if_mutated, reads_training

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


class CutError(ValueError):
    """A model that cannot be traced or cut where asked; the message names the call or node, and the way
    out."""


EXPLICIT_PARTS = (
    "build the TreeNet from explicit parts instead: TreeNet.from_parts(trunk, branch_factory, "
    "M), with a trunk module and a function returning one branch module"
)
_TORCH_DIR = str(Path(torch.__file__).parent)


def _library_leaves() -> tuple[tuple, tuple]:
    """Modules and functions a model library registered as not traceable (timm's ``register_notrace_module``
    and ``register_notrace_function``, used by its own fx feature extraction), when it is imported."""
    fx_reg = sys.modules.get("timm.layers._fx")
    if fx_reg is None:
        return (), ()
    fns = tuple(f for f in fx_reg.get_notrace_functions() if callable(f))
    return tuple(fx_reg.get_notrace_modules()), fns


class _Tracer(fx.Tracer):
    def __init__(self, root_name: str):
        self.library_modules, functions = _library_leaves()
        super().__init__(autowrap_functions=functions)
        self.root_name = root_name
        self.kept: dict[str, str] = {}  # leaf path -> why it is kept whole

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, self.library_modules):
            lib = type(m).__module__.split(".")[0]
            self.kept.setdefault(qualname, f"{lib} registers it as not traceable")
            return True
        if super().is_leaf_module(m, qualname):
            lib = type(m).__module__.split(".")[0]
            self.kept.setdefault(qualname, f"a {lib}.nn module, traced as one call")
            return True
        if qualname and reads_training(type(m)):
            self.kept.setdefault(qualname, "its forward reads self.training")
            return True
        return False


def _trace(model: nn.Module, training: bool) -> tuple[fx.Graph, dict[str, str]]:
    modes = {m: m.training for m in model.modules()}
    tracer = _Tracer(type(model).__name__)
    try:
        model.train(training)
        return _drop_fixed(tracer.trace(model, concrete_args=_defaults(model))), tracer.kept
    except Exception as err:  # fx raises TraceError, TypeError, NotImplementedError, ... naming the call
        first = " ".join(str(err).split())[:300]
        raise CutError(
            f"split: {type(model).__name__} cannot be traced by torch.fx{_where(err)} "
            f"({type(err).__name__}: {first}); {EXPLICIT_PARTS}"
        ) from None
    finally:
        for m, t in modes.items():
            m.training = t


def _defaults(model: nn.Module) -> dict | None:
    """The optional arguments of ``forward`` after the input (timm's ``attn_mask=None``), fixed at their
    defaults: a TreeNet base is called with one tensor."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    fixed = {
        p.name: p.default
        for p in params
        if p.default is not p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return fixed or None


def _drop_fixed(graph: fx.Graph) -> fx.Graph:
    """Remove the placeholders of arguments fixed at their defaults and the checks fx adds on them, so the
    graph takes the input alone."""
    for ph in [n for n in graph.nodes if n.op == "placeholder"][1:]:
        chain, todo = [], [ph]
        while todo:
            n = todo.pop()
            chain.append(n)
            todo.extend(n.users)
        if all(n is ph or n.op == "call_function" for n in chain):
            order = {n: i for i, n in enumerate(graph.nodes)}
            for n in sorted(set(chain), key=lambda n: -order[n]):
                graph.erase_node(n)
    return graph


def _where(err: BaseException) -> str:
    """`` at FILE:LINE (`code`)``: the innermost frame of the failed trace outside torch itself."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith(_TORCH_DIR)]
    if not frames:
        return ""
    f = frames[-1]
    code = f" `{f.line.strip()}`" if f.line else ""
    return f" at {f.filename}:{f.lineno}{code}"


# --- one graph's split points -------------------------------------------------------------------------------
@dataclass
class _Points:
    cut: dict[str, fx.Node]  # valid split point -> the node its call hands on
    why: dict[str, str]  # module path -> why it is not a split point


def _points(graph: fx.Graph, names: list[str], kept: dict[str, str]) -> _Points:
    nodes = list(graph.nodes)
    order = {n: i for i, n in enumerate(nodes)}
    calls: dict[str, list[str]] = {}  # path -> call keys ("path", "path@1", ...)
    span: dict[str, list[fx.Node]] = {}
    for n in nodes:
        for key, (path, _) in n.meta.get("nn_module_stack", {}).items():
            if key not in span:
                span[key] = []
                calls.setdefault(path, []).append(key)
            span[key].append(n)
    # reach[i]: the earliest non-parameter node read by any node after position i (or i+1 when none)
    reach = [len(nodes)] * (len(nodes) + 1)
    for i in range(len(nodes) - 1, -1, -1):
        ins = [order[a] for a in nodes[i].all_input_nodes if a.op != "get_attr"]
        reach[i] = min([reach[i + 1], *ins]) if i + 1 < len(nodes) else min([len(nodes), *ins])
    out = _Points({}, {})
    for name in names:
        leaf = next((p for p in kept if name.startswith(p + ".")), None)
        if leaf is not None:
            out.why[name] = (
                f"it is inside {leaf!r}, which the trace keeps whole ({kept[leaf]}); split at "
                f"{leaf!r} itself or outside it"
            )
            continue
        keys = calls.get(name, [])
        if len(keys) != 1:
            out.why[name] = (
                "forward never calls it"
                if not keys
                else f"forward calls it {len(keys)} times (a split point is called exactly once)"
            )
            continue
        inside = set(span[keys[0]])
        handed = [n for n in span[keys[0]] if n.op != "get_attr" and any(u not in inside for u in n.users)]
        if len(handed) != 1:
            what = (
                "nothing (it returns its input or a constant)"
                if not handed
                else f"{len(handed)} values ({', '.join(n.name for n in handed)})"
            )
            out.why[name] = f"its call hands on {what}; a split point hands on one tensor"
            continue
        cut = handed[0]
        i = order[cut]
        if i + 1 < len(nodes) and reach[i + 1] < i:
            late = next(
                n
                for n in nodes[i + 1 :]
                if any(order[a] < i for a in n.all_input_nodes if a.op != "get_attr")
            )
            early = next(a for a in late.all_input_nodes if a.op != "get_attr" and order[a] < i)
            out.why[name] = (
                f"{late.name!r} ({late.format_node()}) uses {early.name!r} from before the cut "
                "(a skip connection across it)"
            )
            continue
        out.cut[name] = cut
    return out


# --- the analysis of a model, cached ------------------------------------------------------------------------
@dataclass
class Analysis:
    """A model's graphs in training and evaluation mode (one graph when they agree), its split points and
    why every other module is not one."""

    graphs: dict[bool, fx.Graph]
    cuts: dict[bool, dict[str, fx.Node]]
    why: dict[str, str]
    points: list[str] = field(default_factory=list)
    model_name: str = ""


_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, Analysis]]" = weakref.WeakKeyDictionary()


def _key(model: nn.Module) -> tuple:
    return tuple((name, id(m), type(m)) for name, m in model.named_modules(remove_duplicate=False))


def analyse(model: nn.Module) -> Analysis:
    """Trace ``model`` in both modes (or reuse the cached traces of this very module, unchanged)."""
    key = _key(model)
    hit = _CACHE.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    names = [n for n, _ in model.named_modules() if n]
    train, kept = _trace(model, True)
    evaluate, kept_eval = _trace(model, False)
    kept.update(kept_eval)
    graphs = {True: train}
    graphs[False] = train if _code(train) == _code(evaluate) else evaluate
    found = {mode: _points(g, names, kept) for mode, g in graphs.items()}
    why = {**found[False].why, **found[True].why}
    points = [n for n in names if n in found[True].cut and n in found[False].cut]
    for n in names:
        if n not in points and n not in why:
            why[n] = "its cut differs between training and evaluation mode"
    result = Analysis(graphs, {m: f.cut for m, f in found.items()}, why, points, type(model).__name__)
    _CACHE[model] = (key, result)
    return result


def _code(graph: fx.Graph) -> str:
    return graph.python_code(root_module="self").src


def split_points(model: nn.Module) -> list[str]:
    """Module paths where ``model`` can be cut, in ``named_modules`` order: every submodule called once whose
    output alone carries the computation on (residual blocks and stages qualify; a layer inside a residual
    block, whose input a skip connection also reads, does not). Traced twice, then cached."""
    return list(analyse(model).points)


def why_not(analysis: Analysis, point: str) -> str:
    """A one-line refusal of ``point`` naming the reason and the valid points."""
    valid = ", ".join(analysis.points) or "none"
    if point not in analysis.why:
        return (
            f"split: {point!r} is not a layer of the base network ({analysis.model_name}); valid layer "
            f"names are: {valid}"
        )
    return (
        f"split: cutting after {point!r} is not possible: {analysis.why[point]}; choose a split point "
        f"whose output alone carries the computation on, e.g. one of: {valid}"
    )


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
