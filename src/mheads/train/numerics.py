"""Numerical faults during training: which member's loss or gradient went non-finite.

Two ways to guard an update. ``train.sync: step`` decides on the host before the optimizer step
(:func:`all_finite`, one synchronisation per step, free on a CPU). ``train.sync: deferred`` (the CUDA
default) decides on the device: :func:`guarded_step` applies the update and puts back the old values where
the step was not finite, as AMP's GradScaler skips a step, and :class:`DeviceTally` keeps the counts on the
device until the loop reads them at a logging point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = [
    "DeferredStep",
    "DeviceTally",
    "NumericalFault",
    "all_finite",
    "bad_members",
    "finite_flags",
    "guarded_step",
    "member_param_map",
]


class NumericalFault(RuntimeError):
    """A NaN/Inf loss or gradient; no update was applied for that step."""

    def __init__(self, step: int, members: list[int], where: str):
        self.step, self.members, self.where = step, members, where
        who = ", ".join(f"member {m}" for m in members) if members else "the shared trunk"
        super().__init__(
            f"non-finite {where} at iteration {step} in {who}; no update was applied for that step"
        )


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


def bad_members(
    per_member: torch.Tensor | None,
    params: list[torch.Tensor],
    owners: dict[int, list[int]],
    num_members: int,
) -> tuple[list[int], str]:
    """The slow path after :func:`all_finite` failed: name the members and whether the loss or a gradient."""
    losses = [] if per_member is None else [bool(torch.isfinite(per_member[m])) for m in range(num_members)]
    grads = [p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params]
    return members_from_flags(losses + grads, params, owners, num_members, per_member is not None)


def finite_flags(per_member: torch.Tensor | None, params: list[torch.Tensor]) -> torch.Tensor:
    """``(M + P,)`` bool on the device, no synchronisation: whether each member's loss (the first M, when
    there are per-member losses) and each parameter's gradient (one per entry of ``params``, in order; a
    parameter without a gradient counts as finite) is finite. The length never changes during a run, even
    where the parameters that get gradients do (scoring heads after a pretraining)."""
    device = per_member.device if per_member is not None else (params[0].device if params else None)
    zero = torch.zeros(1, device=device)
    sums = [p.grad.sum().reshape(1) if p.grad is not None else zero for p in params]
    parts = ([] if per_member is None else [per_member.detach().reshape(-1)]) + sums
    if not parts:
        return torch.ones(1, dtype=torch.bool)
    return torch.isfinite(torch.cat([t.to(device, torch.float32) for t in parts]))


def guarded_step(opt, params: list[torch.Tensor], ok: torch.Tensor) -> None:
    """``opt.step()``, undone on the device where ``ok`` (0-d bool) is False: every parameter and optimizer
    state tensor keeps its value from before the step, and state the step created is zeroed (the fresh state
    of SGD's momentum and of Adam's moments and step count). Exact when ``ok``: ``where`` returns the
    stepped values themselves."""
    tracked = [p for p in params if p.grad is not None]
    before = [p.detach().clone() for p in tracked]
    state_before = {
        id(p): {k: v.clone() for k, v in opt.state[p].items() if isinstance(v, torch.Tensor)}
        for p in tracked
        if p in getattr(opt, "state", {})
    }
    opt.step()
    with torch.no_grad():
        for p, old in zip(tracked, before):
            p.copy_(torch.where(ok.to(p.device), p, old))
        for p in tracked:
            saved = state_before.get(id(p), {})
            for k, v in getattr(opt, "state", {}).get(p, {}).items():
                if isinstance(v, torch.Tensor):
                    v.copy_(torch.where(ok.to(v.device), v, saved[k] if k in saved else torch.zeros_like(v)))


@dataclass
class DeferredStep:
    """One update under ``train.sync: deferred``, all on the device: the loss (0-d), whether the update was
    applied (0-d bool), the finiteness flags (:func:`finite_flags`) and MCL win counts (or None)."""

    loss: torch.Tensor
    ok: torch.Tensor
    flags: torch.Tensor
    wins: torch.Tensor | None


@dataclass
class DeviceTally:
    """Sums a deferred-sync run keeps on the device between logging points; :meth:`read` brings them to the
    host in one transfer."""

    device: torch.device
    # the sums below are set by __post_init__ and reset()
    loss_sum: torch.Tensor = field(init=False)  # float64: the same additions as the host's running sum
    applied: torch.Tensor = field(init=False)  # updates applied
    bad: torch.Tensor = field(init=False)  # updates undone
    run: torch.Tensor = field(init=False)  # undone in a row, now (RunState.skipped at each read)
    longest: torch.Tensor = field(init=False)  # the longest such run since the last read
    first_bad: torch.Tensor = field(init=False)  # first undone update's iteration since the last read, or -1
    first_flags: torch.Tensor | None = None  # its finiteness flags
    losses: list[torch.Tensor] = field(default_factory=list)  # per-step losses, when a schedule needs them

    def __post_init__(self) -> None:
        # reset() leaves `run` as it is: a run of bad steps continues across reads
        self.run = torch.zeros((), dtype=torch.int64, device=self.device)
        self.reset()

    def reset(self) -> None:
        z = torch.zeros((), dtype=torch.int64, device=self.device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.applied, self.bad, self.longest = z.clone(), z.clone(), z.clone()
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=self.device)
        self.first_flags, self.losses = None, []

    def add(self, it: int, step: DeferredStep, keep_loss: bool = False) -> None:
        ok = step.ok.to(self.device)
        bad = (~ok).to(torch.int64)
        self.loss_sum += torch.where(ok, step.loss.to(self.device, torch.float64), 0.0)
        self.applied += 1 - bad
        self.bad += bad
        self.run = (self.run + 1) * bad
        self.longest = torch.maximum(self.longest, self.run)
        first = (self.first_bad < 0) & (bad > 0)
        self.first_bad = torch.where(first, torch.full_like(self.first_bad, it), self.first_bad)
        flags = step.flags.to(self.device)
        self.first_flags = flags if self.first_flags is None else torch.where(first, flags, self.first_flags)
        if keep_loss:
            self.losses.append(step.loss.detach())

    def read(self) -> dict:
        """The sums since the last read, on the host (the one synchronisation), and a reset."""
        head = torch.stack(
            [
                self.loss_sum,
                self.applied.double(),
                self.bad.double(),
                self.longest.double(),
                self.first_bad.double(),
                self.run.double(),
            ]
        ).tolist()
        out = {
            "loss_sum": head[0],
            "applied": int(head[1]),
            "bad": int(head[2]),
            "longest": int(head[3]),
            "first_bad": int(head[4]),
            "in_a_row": int(head[5]),
            "flags": None if self.first_flags is None or head[2] == 0 else self.first_flags.tolist(),
            "losses": [float(v) for v in torch.stack(self.losses).tolist()] if self.losses else [],
        }
        self.reset()
        return out


def members_from_flags(
    flags: list[bool],
    params: Sequence[torch.Tensor],
    owners: dict[int, list[int]],
    num_members: int,
    has_member_losses: bool,
) -> tuple[list[int], str]:
    """The members to name for a non-finite step, and whether its loss or a gradient: ``flags`` say which
    member losses (the first ``num_members``, when ``has_member_losses``) and which parameters' gradients (one
    per entry of ``params``) were finite (:func:`finite_flags`, or :func:`bad_members` on the host). A
    gradient only in layers several members share is reported as the shared trunk (no member)."""
    if has_member_losses:
        bad = [m for m in range(num_members) if not flags[m]]
        if bad:
            return bad, "loss"
        flags = flags[num_members:]
    found: set[int] = set()
    shared = False
    for p, fine in zip(params, flags):
        if not fine:
            who = owners.get(id(p), [])
            if len(who) == 1:
                found.add(who[0])
            else:
                shared = True
    if shared and not found:
        return [], "gradient"
    return sorted(found), "gradient"
