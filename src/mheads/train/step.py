"""One update: forward over ``train.accumulate`` batches, the ensemble loss at the root, backward, the
finiteness guard, the optimizer step.

Every random draw of a step is derived from the run seed and the batch number (``mheads.core.seeding``), so a
resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from mheads.config import Config, ConfigError
from mheads.core.seeding import Stream, derive_seed, derived_generator
from mheads.ensemble.losses import (
    ENSEMBLE_LOSSES,
    LOSS_ALIASES,
    LOSSES,
    LossResult,
    annealed_temperature,
    compute_loss,
)
from mheads.tasks import Classification, Task
from mheads.train.numerics import (
    DeferredStep,
    NumericalFault,
    all_finite,
    bad_members,
    finite_flags,
    guarded_step,
)
from mheads.tree import TreeNet, resolve_exec_mode

__all__ = [
    "deferred_step",
    "forward_backward",
    "has_scoring_heads",
    "member_by_member",
    "members_separable",
    "train_step",
]


def members_separable(model, loss_name: str, device: torch.device) -> bool:
    """Whether one update may run the members one after another: independent members (no shared layer) under a
    loss that is a sum of per-member terms, on the loop path, in one process. The plain PyTorch loop steps its
    models that way; one joint backward over M members keeps all their activations alive at once."""
    return (
        loss_name == "independent_ce"
        and isinstance(model, TreeNet)
        and model.root.is_identity
        and resolve_exec_mode(model.exec_mode, device) == "loop"
    )


def member_by_member(
    tree: TreeNet,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor | None,
    divisor: int = 1,
    label_smoothing: float = 0.0,
    autocast=nullcontext,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward each member in turn (independent cross-entropy, its loss over ``divisor``): the
    same gradients as one joint backward, with one member's activations alive at a time. Returns (the summed
    loss over ``divisor``, per-member losses (M,)), detached, equal to the joint path's."""
    per = []
    for m, node in enumerate(tree.root.branches):
        with autocast():
            logits = node(x)[0].unsqueeze(0)  # (1, B, C)
        res = compute_loss(
            "independent_ce",
            logits.float(),
            y,
            weights=None if w is None else w[m : m + 1],
            label_smoothing=label_smoothing,
        )
        (res.loss / divisor).backward()
        per.append(res.per_member)
    per_member = torch.cat(per)
    return (per_member.sum() / divisor).detach(), per_member


def _tie_generator(seed: int, b: int, logits: torch.Tensor, shard) -> torch.Generator:
    """MCL's tie-breaking generator for batch ``b``; a data-parallel replica skips the draws of the rows
    before its shard (a CPU generator is consumed example by example, ``M`` uniforms each:
    ``mheads.ensemble.assignment``), so each example breaks ties as it would in the whole batch."""
    g = derived_generator(seed, Stream.MCL, b, device=logits.device)
    if shard is not None and shard[0]:
        before = shard[0] * logits.shape[1] * logits.shape[0]
        torch.rand(before, generator=g, device=g.device, dtype=torch.float64)
    return g


def task_scores_from_model(task: Task | None) -> bool:
    """Whether a scored loss reads its score logits from the model's scoring heads (classification and
    tasks whose outputs carry none) rather than from the outputs (multi_hypothesis: the last column)."""
    return task is None or type(task).score_logits is Task.score_logits


def has_scoring_heads(model) -> bool:
    """Whether ``model`` (a TreeNet, or a wrapper that forwards attributes, like ``torch.compile``'s) has
    scoring heads and :meth:`~mheads.tree.TreeNet.forward_with_scores`."""
    return getattr(model, "scoring", None) is not None and hasattr(model, "forward_with_scores")


def _check_scoring(model, cfg: Config, scored: bool) -> None:
    if scored and not cfg.model.scoring_heads:
        cfg.loss.validate(cfg.model.members, model=cfg.model, task=cfg.task)  # names model.scoring_heads
    if cfg.model.scoring_heads and not has_scoring_heads(model):
        raise ConfigError(
            f"model.scoring_heads: got True; expected false for this model: the "
            f"{type(model).__name__} being trained has no scoring heads (a distributed model, "
            "or a TreeNet given to fit: build it with scoring_heads=True)"
        )


def train_step(
    model, opt, data, cfg: Config, it: int, comm, params, owners, task: Task | None = None
) -> tuple[float, torch.Tensor | None, torch.Tensor | None]:
    """One update (``cfg.train.accumulate`` batches). Returns (loss, per-member loss, wins) as seen by the
    root (per-member loss: None on a rank that does not compute the loss), wins being how many of the step's
    examples each member was assigned, ``(M,)`` int64 on the device, for the losses that assign (None
    otherwise, and off the root); raises :class:`NumericalFault` (after zeroing the gradients, so no update
    happens) on a non-finite loss/gradient.

    Annealed MCL ("amcl") gets the temperature of iteration ``it`` (``annealed_temperature``); a loss with
    scores ("mcl_scored") gets the scoring heads' logits from ``model.forward_with_scores``. ``task``: what
    the outputs mean (:mod:`mheads.tasks`); None or classification: the classification path, unchanged."""
    total, per_member, wins = forward_backward(model, opt, data, cfg, it, comm, params, task)
    if comm.any(not all_finite(per_member, params)):
        members, where = bad_members(per_member, params, owners, cfg.model.members)
        opt.zero_grad(set_to_none=True)
        raise NumericalFault(it, members, where)
    opt.step()
    return float(comm.broadcast_scalars(total.reshape(1).float().cpu())[0]), per_member, wins


def deferred_step(
    model, opt, data, cfg: Config, it: int, comm, params, task: Task | None = None
) -> DeferredStep:
    """:func:`train_step` without a host synchronisation (``train.sync: deferred``, the CUDA default): the
    finiteness guard is decided on the device and a non-finite update is undone there
    (:func:`~mheads.train.numerics.guarded_step`); the loss, the flag and which values were finite stay on
    the device for the loop to read at its next logging point."""
    total, per_member, wins = forward_backward(model, opt, data, cfg, it, comm, params, task)
    flags = finite_flags(per_member, params)
    ok = comm.all_true(flags.all())
    guarded_step(opt, params, ok)
    return DeferredStep(total, ok, flags, wins)


def task_loss(
    task: Task,
    loss_name: str,
    outputs: torch.Tensor,
    y: torch.Tensor,
    *,
    cfg: Config,
    weights: torch.Tensor | None,
    scores: torch.Tensor | None,
    temperature: float,
    generator: torch.Generator,
) -> LossResult:
    """``task.loss`` with the run's loss settings (any task but classification, whose path is
    ``compute_loss`` as it always was); a loss of the combined prediction takes no per-member weights and no
    generator."""
    L = cfg.loss
    if loss_name in task.averaged:
        return task.loss(
            loss_name,
            outputs,
            y,
            k=L.k,
            mix=L.mix,
            beta=L.beta,
            epsilon=L.epsilon,
            temperature=temperature,
            score_weight=L.score_weight,
        )
    return task.loss(
        loss_name,
        outputs,
        y,
        weights=weights,
        score_logits=scores,
        generator=generator,
        k=L.k,
        mix=L.mix,
        beta=L.beta,
        epsilon=L.epsilon,
        temperature=temperature,
        score_weight=L.score_weight,
    )


@dataclass(frozen=True)
class _StepPlan:
    """What every batch of one step shares: the loss (``independent_ce`` while pretraining), whether it reads
    scores, its temperature, and how and where it runs."""

    task: Task | None  # None: classification, through compute_loss
    loss_name: str
    scored: bool  # the scoring heads' logits go to the loss
    temperature: float
    separate: bool  # the members forward and backward one at a time (member_by_member)
    computes_loss: bool  # this rank computes the loss (the root, or a replica's own root)
    shard: tuple[int, int] | None  # a data-parallel replica's rows of the batch


def _plan_step(model, opt, data, cfg: Config, it: int, comm, task: Task | None) -> _StepPlan:
    """Seed the step's global draws, clear the gradients, and decide the step's loss and path."""
    t, L = cfg.train, cfg.loss
    # dropout and anything else drawing globally; each data-parallel replica draws its own
    keys = (Stream.STEP, it) if comm.replicas == 1 else (Stream.STEP, it, "replica", comm.replica)
    torch.manual_seed(derive_seed(t.seed, *keys))
    opt.zero_grad(set_to_none=True)
    loss_name = L.name if it >= L.pretrain_iterations else "independent_ce"
    spec = LOSSES[loss_name] if task is None else ENSEMBLE_LOSSES.get(LOSS_ALIASES.get(loss_name, loss_name))
    scored = spec is not None and spec.scores and task_scores_from_model(task)
    _check_scoring(model, cfg, scored)
    return _StepPlan(
        task=task,
        loss_name=loss_name,
        scored=scored,
        temperature=annealed_temperature(L.temperature, L.anneal_iterations, it),
        separate=task is None and comm.world_size == 1 and members_separable(model, loss_name, data.device),
        computes_loss=getattr(model, "is_root", comm.is_root),
        shard=getattr(data, "shard", None),
    )


def _ensemble_loss(plan: _StepPlan, cfg: Config, logits, scores, y, w, b: int) -> LossResult:
    """The ensemble loss of batch ``b``'s member outputs ``logits`` (M, B, ...) and score logits (M, B) or
    None: ``compute_loss`` for classification, the task's loss otherwise."""
    t, L = cfg.train, cfg.loss
    if plan.task is None:
        return compute_loss(
            plan.loss_name,
            logits.float(),
            y,
            k=L.k,
            mix=L.mix,
            beta=L.beta,
            weights=w,
            epsilon=L.epsilon,
            temperature=plan.temperature,
            score_weight=L.score_weight,
            score_logits=None if scores is None else scores.float(),
            label_smoothing=L.label_smoothing,
            generator=_tie_generator(t.seed, b, logits, plan.shard),
        )
    return task_loss(
        plan.task,
        plan.loss_name,
        logits.float(),
        y,
        cfg=cfg,
        weights=w,
        scores=None if scores is None else scores.float(),
        temperature=plan.temperature,
        generator=_tie_generator(t.seed, b, logits, plan.shard),
    )


def _forward_loss(model, plan: _StepPlan, cfg: Config, x, y, w, b: int, autocast):
    """Batch ``b``'s forward and the loss to backpropagate: on a rank that computes the loss, the ensemble
    loss over ``train.accumulate`` and its result; elsewhere the zero-element output, whose backward pulls
    this rank's gradient from the root, and None."""
    scores = None
    with autocast():
        if plan.scored:
            logits, scores = model.forward_with_scores(x)  # (M, B, C), (M, B)
        else:
            logits = model(x)  # (M, B, C) at the root
    if not plan.computes_loss:
        return logits.sum(), None
    res = _ensemble_loss(plan, cfg, logits, scores, y, w, b)
    return res.loss / cfg.train.accumulate, res


def forward_backward(
    model, opt, data, cfg: Config, it: int, comm, params, task: Task | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Forward and backward over the step's ``train.accumulate`` batches, gradients averaged over
    data-parallel replicas: (the loss, 0-d on the device; per-member losses; MCL win counts)."""
    if isinstance(task, Classification):
        task = None  # classification: compute_loss, as before tasks existed (bit-identical runs)
    plan = _plan_step(model, opt, data, cfg, it, comm, task)
    t = cfg.train
    total = torch.zeros((), device=data.device)
    per_member = wins = None
    for a in range(t.accumulate):
        b = it * t.accumulate + a
        x, y, w = data.train_batch(b, derived_generator(t.seed, Stream.AUGMENT, b, device=data.device))
        autocast = (lambda: torch.autocast(data.device.type, dtype=torch.bfloat16)) if t.amp else nullcontext
        if plan.separate:
            loss, part = member_by_member(model, x, y, w, t.accumulate, cfg.loss.label_smoothing, autocast)
            per_member = part if per_member is None else per_member + part
            total = total + loss
            continue
        loss, res = _forward_loss(model, plan, cfg, x, y, w, b, autocast)
        if res is not None:
            per_member = res.per_member if per_member is None else per_member + res.per_member
            if res.assignment is not None:
                won = res.assignment.sum(dim=1)  # (M,)
                wins = won if wins is None else wins + won
            total = total + loss.detach()
        loss.backward()
    comm.average_gradients(params)  # over data-parallel replicas (a no-op without)
    if plan.computes_loss and comm.replicas > 1:  # every replica root's shard: the mean over the whole batch
        total = comm.sum_over_replicas(total) / comm.replicas
        wins = None if wins is None else comm.sum_over_replicas(wins)
    return total, per_member, wins
