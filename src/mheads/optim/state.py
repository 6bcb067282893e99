"""Optimizer state keyed by parameter name, so that it can move between placements.

``torch.optim`` numbers parameters by their position in the optimizer's groups; a checkpoint stores that form,
as a single process over the whole TreeNet has it. A distributed rank's optimizer holds only its part, so
its positions differ. These pure functions convert between the positional form and ``{name: {field:
tensor}}``, given the parameter names in optimizer order (:func:`names_in_order`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["FIELDS", "by_field", "from_named", "names_in_order", "to_named"]

# Per-parameter tensors of the optimizers mheads builds (SGD's momentum; AdamW's step and moments).
FIELDS = ("momentum_buffer", "step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def names_in_order(opt, named_parameters) -> list[str]:
    """The names of ``opt``'s parameters in its own numbering (group by group)."""
    name_of = {id(p): n for n, p in named_parameters}
    out = []
    for g in getattr(opt, "param_groups", []):
        for p in g["params"]:
            if id(p) not in name_of:
                raise KeyError("an optimizer parameter is not among the named parameters given")
            out.append(name_of[id(p)])
    return out


def to_named(state_dict: Mapping, names: Sequence[str]) -> dict[str, dict[str, torch.Tensor]]:
    """``{name: {field: tensor}}`` from an optimizer ``state_dict`` whose positions ``names`` names;
    fields that are not tensors (SGD's ``None`` buffer without momentum) are left out."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for i, fields in state_dict.get("state", {}).items():
        i = int(i)
        if not 0 <= i < len(names):
            raise KeyError(f"optimizer state: position {i} is outside the {len(names)} parameters named")
        kept = {f: t for f, t in fields.items() if isinstance(t, torch.Tensor)}
        if kept:
            out[names[i]] = kept
    return out


def from_named(
    named: Mapping[str, Mapping[str, torch.Tensor]], names: Sequence[str], param_groups: list[dict]
) -> dict:
    """The positional ``state_dict`` for an optimizer whose parameters are ``names`` (in its order) and whose
    groups are ``param_groups`` (its own ``state_dict()["param_groups"]``: hyperparameters and positions)."""
    state = {i: dict(named[n]) for i, n in enumerate(names) if n in named}
    return {"state": state, "param_groups": [dict(g) for g in param_groups]}


def by_field(named: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
    """``{field: {name: tensor}}`` for every field of :data:`FIELDS`, the form collectives move (one field
    at a time, every rank calling for each field)."""
    return {f: {n: fields[f] for n, fields in named.items() if f in fields} for f in FIELDS}
