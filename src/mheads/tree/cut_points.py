"""Where any ``nn.Module`` can be cut: tracing it with ``torch.fx`` and finding its split points.

A split point is a module path (``"layer2"``, ``"layer3.1"``, ``"features.8"``). The model is traced once
per mode (training and evaluation, see :mod:`mheads.tree.traced`), every submodule traced through except the
leaves (``torch.nn`` layers, and modules whose ``forward`` reads ``self.training``, kept whole so that
DropPath and friends stay random in training and off in evaluation, drawn per member). Each node of the graph
records the module calls it was made in (``nn_module_stack``), so one trace finds every split point: a module
called once whose call hands exactly one value on, and after which nothing reads a value from before it (a
skip connection jumping over the cut makes it invalid: the error names the node that reaches back).
Analyses are cached per model, so :func:`split_points` traces a model twice, not once per module; the graph
surgery that cuts at the points found is in :mod:`mheads.tree.cut`.
"""

from __future__ import annotations

import inspect
import sys
import traceback
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.fx as fx
from torch import nn

from mheads.tree.traced import reads_training

__all__ = ["Analysis", "CutError", "analyse", "split_points", "why_not"]


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
