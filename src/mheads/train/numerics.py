"""Numerical faults during training: which member's loss or gradient went non-finite."""

from __future__ import annotations

import torch


class NumericalFault(RuntimeError):
    """A NaN/Inf loss or gradient; no update was applied for that step."""

    def __init__(self, step: int, members: list[int], where: str):
        self.step, self.members, self.where = step, members, where
        who = ", ".join(f"member {m}" for m in members) if members else "the shared trunk"
        super().__init__(f"non-finite {where} at iteration {step} in {who}; "
                         "no update was applied for that step")


def member_param_map(tree) -> dict[int, list[int]]:
    """id(parameter) -> the members whose root-to-leaf path holds it."""
    owners: dict[int, list[int]] = {}
    for m, path in enumerate(tree.paths()):
        for node in path:
            for p in node.layers.parameters():
                owners.setdefault(id(p), []).append(m)
    return owners


def all_finite(per_member: torch.Tensor | None, params: list[torch.Tensor]) -> bool:
    """One host synchronisation: are the per-member losses and every gradient finite?"""
    sums = [p.grad.sum() for p in params if p.grad is not None]
    if per_member is not None:
        sums.append(per_member.sum())
    if not sums:
        return True
    return bool(torch.isfinite(torch.stack(sums)).all())


def bad_members(per_member: torch.Tensor | None, params: list[torch.Tensor], owners: dict[int, list[int]],
                num_members: int) -> tuple[list[int], str]:
    """The slow path after :func:`all_finite` failed: name the members and whether the loss or a gradient."""
    if per_member is not None:
        bad = [m for m in range(num_members) if not torch.isfinite(per_member[m])]
        if bad:
            return bad, "loss"
    found: set[int] = set()
    shared = False
    for p in params:
        if p.grad is not None and not torch.isfinite(p.grad).all():
            who = owners.get(id(p), [])
            if len(who) == 1:
                found.add(who[0])
            else:
                shared = True
    if shared and not found:
        return [], "gradient"  # only layers that several members share: reported as the shared trunk
    return sorted(found), "gradient"
