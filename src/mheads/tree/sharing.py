"""One object on both sides of a cut: a module the base calls before and after a split point, or a weight
tied between two modules (an embedding and the classifier of a language model).

Each member's segments are cut from that member's own copy of the base, so without care a member's branch
would hold its own copy of an object the trunk also uses, and only member 0 would stay tied. Here every
segment is walked after it is built and each module, parameter or buffer that an ancestor segment (the trunk,
or a shared node of a deeper tree) already uses is replaced by the ancestor's object: modules used in the
trunk stay shared, and each member keeps the base's tying. Objects are matched by their canonical path in the
base (the first of its names, as ``named_modules`` and ``named_parameters`` give them), which is the same in
every copy.
"""

from __future__ import annotations

from torch import nn

__all__ = ["canonical_names", "share_with_ancestors", "used_objects"]


def canonical_names(model: nn.Module) -> dict[str, str]:
    """Every module, parameter and buffer path of ``model`` -> the first path of the same object."""
    first: dict[int, str] = {}
    out: dict[str, str] = {}
    for kind, items in (
        ("m", model.named_modules(remove_duplicate=False)),
        ("p", model.named_parameters(remove_duplicate=False)),
        ("b", model.named_buffers(remove_duplicate=False)),
    ):
        for name, obj in items:
            key = f"{kind}:{name}"
            out[key] = first.setdefault(id(obj), key)
    return out


def _walk(module: nn.Module, prefix: str, visit) -> None:
    """``visit(owner, slot_kind, slot_name, path, obj)`` for every child, parameter and buffer below
    ``module`` (a replaced child is not walked into)."""
    for kind, slots in (("p", module._parameters), ("b", module._buffers)):
        for name, obj in list(slots.items()):
            if obj is not None:
                visit(module, kind, name, f"{prefix}{name}", obj)
    for name, child in list(module._modules.items()):
        if child is None:
            continue
        if visit(module, "m", name, f"{prefix}{name}", child) is None:
            _walk(child, f"{prefix}{name}.", visit)  # not replaced: still module._modules[name]


def used_objects(part: nn.Module, canon: dict[str, str]) -> dict[str, object]:
    """Canonical path -> object for everything below ``part`` (a segment whose paths are the base's)."""
    out: dict[str, object] = {}

    def visit(owner, kind, name, path, obj):
        if kind == "m" and type(obj) is nn.Module:
            return None  # a container fx made to hold a path, not the base's module
        key = canon.get(f"{kind}:{path}")
        if key is not None:
            out.setdefault(key, obj)

    _walk(part, "", visit)
    return out


def share_with_ancestors(part: nn.Module, canon: dict[str, str], inherited: dict[str, object]) -> None:
    """Replace, below ``part``, every module, parameter and buffer whose canonical path is in ``inherited``
    by the inherited object."""
    if not inherited:
        return

    def visit(owner, kind, name, path, obj):
        if kind == "m" and type(obj) is nn.Module:
            return None
        key = canon.get(f"{kind}:{path}")
        new = inherited.get(key) if key is not None else None
        if new is None or new is obj:
            return None
        {"m": owner._modules, "p": owner._parameters, "b": owner._buffers}[kind][name] = new
        return True

    _walk(part, "", visit)
