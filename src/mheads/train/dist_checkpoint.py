"""Checkpoints of a distributed run, in the single-process layout.

A checkpoint of a run trained on several processes is what a single process training the same TreeNet would
have saved: the whole TreeNet's weights and the optimizer state numbered as a single-process optimizer over
the whole tree numbers it. Replica 0's ranks send their parts to the root (collective over replica 0's
placement), which writes the checkpoint as usual (atomic commit, hashes, keep-last-K): a checkpoint exists
only once every rank's part is in it. So ``mheads eval`` reads the folder as any other, and a run can be
resumed on any placement, a single process included.

On resume the root reads the checkpoint; the run state (JSON) goes to every rank, each of replica 0's ranks
receives its part of the weights and optimizer state, and the other replicas copy replica 0's ranks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeGuard

import torch

from mheads.config import ConfigError
from mheads.optim.build import build_optimizer
from mheads.optim.state import FIELDS, by_field, from_named, names_in_order, to_named

__all__ = ["DistributedPart", "gather_checkpoint", "is_distributed", "restore_parts", "run_state_json"]


class DistributedPart(Protocol):
    """One rank's part of a placement (``mheads.dist``'s ``DistributedTreeNet``), as training uses it beside
    its module methods."""

    def gather_tensors(self, local: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def scatter_tensors(
        self, full: Mapping[str, torch.Tensor] | None, *, complete: bool = False
    ) -> dict[str, torch.Tensor]: ...

    def full_state_dict(self) -> dict[str, torch.Tensor]: ...


def is_distributed(model: object) -> TypeGuard[DistributedPart]:
    """Whether ``model`` is one rank's part of a placement (it can gather and scatter named tensors)."""
    return hasattr(model, "gather_tensors") and hasattr(model, "scatter_tensors")


def _full_names(cfg, tree) -> tuple[list[str], list[dict]]:
    """The whole tree's parameter names in a single-process optimizer's numbering, and its groups."""
    template, _ = build_optimizer(cfg, list(tree.parameters()), tree)
    return names_in_order(template, tree.named_parameters()), template.state_dict().get("param_groups", [])


def gather_checkpoint(cfg, tree, model, opt, lr: float) -> tuple[dict, dict] | None:
    """``(weights, optimizer state_dict)`` of the whole TreeNet at the root, in the single-process layout
    (its groups at rate ``lr``); None on the other ranks. Collective over the model's ranks (replica 0's)."""
    weights = model.full_state_dict()
    local = to_named(opt.state_dict(), names_in_order(opt, model.named_parameters()))
    per_field = by_field(local)
    gathered = {f: model.gather_tensors(per_field[f]) for f in FIELDS}
    if not model.is_root:
        return None
    named: dict[str, dict[str, torch.Tensor]] = {}
    for f, tensors in gathered.items():
        for name, t in tensors.items():
            named.setdefault(name, {})[f] = t
    names, groups = _full_names(cfg, tree)
    return weights, from_named(named, names, [{**g, "lr": lr} for g in groups])


def _check_groups(saved: Mapping, groups: list[dict], where) -> None:
    """The checkpoint's optimizer groups must number the parameters as this run's do (``optim`` settings
    that regroup them, like ``optim.decay_norm_and_bias``, cannot change on a resume)."""
    have = [len(g["params"]) for g in saved.get("param_groups", [])]
    want = [len(g["params"]) for g in groups]
    if have != want:
        raise ConfigError(
            f"{where}: its optimizer groups hold {have} parameters, this run's {want}; "
            "optim.decay_norm_and_bias (or another setting that groups the parameters) differs "
            "from the run that saved it: resume with the same optim settings"
        )


def run_state_json(state: Mapping) -> dict:
    """The part of a checkpoint's state every rank needs and JSON carries: everything but the optimizer."""
    return {k: v for k, v in state.items() if k != "optimizer"}


def restore_parts(cfg, tree, model, opt, comm, ck) -> None:
    """Load this rank's part of checkpoint ``ck`` (given on the root, None elsewhere) into ``model`` and
    ``opt``. Collective over every rank."""
    local_names = names_in_order(opt, model.named_parameters())
    if comm.replica == 0:
        model.load_full_state_dict(ck.weights if model.is_root else None)
        per_field: dict[str, dict[str, torch.Tensor]] = {f: {} for f in FIELDS}
        if model.is_root:
            names, groups = _full_names(cfg, tree)
            _check_groups(ck.state["optimizer"], groups, ck.path)
            per_field = by_field(to_named(ck.state["optimizer"], names))
        named: dict[str, dict[str, torch.Tensor]] = {}
        for f in FIELDS:
            for name, t in model.scatter_tensors(per_field[f]).items():
                named.setdefault(name, {})[f] = t
    else:
        named = {}
    # the other replicas take replica 0's part: its weights (and buffers), then each optimizer field
    keys = list(model.state_keys())
    weights = comm.copy_from_first_replica(model.state_dict() if comm.replica == 0 else {}, keys)
    if comm.replica != 0:
        model.load_state_dict(weights, strict=True)
        for f in FIELDS:
            for name, t in comm.copy_from_first_replica({}, keys).items():
                named.setdefault(name, {})[f] = t
    else:
        for f in FIELDS:
            comm.copy_from_first_replica({n: v[f] for n, v in named.items() if f in v}, keys)
    if local_names:
        device = next(model.parameters()).device
        named = {n: {f: t.to(device) if f != "step" else t for f, t in v.items()} for n, v in named.items()}
        opt.load_state_dict(from_named(named, local_names, opt.state_dict()["param_groups"]))
