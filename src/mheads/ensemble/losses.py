"""Ensemble-aware losses on member logits `(M, B, C)` and integer targets `(B,)` (paper section 6): the loss
registries and the dispatch by name, the public face of the losses.

All losses are means over the batch. The per-member losses (`independent_ce`, the MCL family: `mcl_loss`,
`mcl_ce_loss`, `confident_mcl_loss`, `relaxed_mcl_loss`, `annealed_mcl_loss`, `scored_mcl_loss`) accept
`weights: (M, B)`, per-member example weights (bagging: how often example i occurs in member m's bootstrap
sample); member m then contributes `sum_i w_mi * l_mi / B`. The averaged losses (`score_averaged_ce`,
`prob_averaged_ce`) couple the members through one prediction and take none. The functions themselves live in
`mheads.ensemble.ce_losses` and `mheads.ensemble.wta`, what a registered loss is (`LossSpec`, `LossParams`,
`LossResult`) in `mheads.ensemble.loss_spec`; every one of them is importable from here.

Averaged losses scale each member's gradient by 1/M (section 6.1); the paper compensates with an M times
larger learning rate, which is a choice of the training recipe and is not folded in here.

Value checks that need a host synchronisation (targets in range, weights finite and non-negative) run only
for CPU tensors; shapes, dtypes and hyperparameters are always checked. `compute_loss` selects a loss by
one of the names in `LOSS_NAMES`, for configs.

Every loss but the two averaged ones is a function of the per-example member losses `(M, B)` alone:
`ensemble_loss(name, member_losses, ...)` computes it for any task (names in `ENSEMBLE_LOSS_NAMES`:
"independent", "mcl", "mcl_ce", "cmcl" (given the non-winners' `penalty: (M, B)`), "rwta", "amcl",
"mcl_scored"), and `compute_loss` is that on the members' cross-entropies. `mheads.tasks` supplies the member
losses of other tasks (regression, multiple hypotheses, segmentation, a user's loss).
"""

from __future__ import annotations

import torch

from mheads.ensemble.ce_losses import (
    _no_weights,
    confident_mcl_loss,
    independent_ce,
    mcl_assignment,
    mcl_ce_loss,
    mcl_loss,
    prob_averaged_ce,
    score_averaged_ce,
)
from mheads.ensemble.combine import member_log_probs, member_nll
from mheads.ensemble.loss_spec import (
    LossParams,
    LossResult,
    LossSpec,
    _amcl,
    _cmcl,
    _independent,
    _mcl,
    _mcl_ce,
    _mcl_scored,
    _rwta,
)
from mheads.ensemble.loss_terms import (
    check_beta,
    check_epsilon,
    check_inputs,
    check_k,
    check_label_smoothing,
    check_member_losses,
    check_mix,
    check_score_logits,
    check_score_weight,
    check_temperature,
    check_weights,
    smoothed_nll,
    uniform_kl,
)
from mheads.ensemble.wta import (  # the winner-takes-all family, re-exported for callers of this module
    annealed_mcl_loss,
    annealed_temperature,
    relaxed_mcl_loss,
    scored_mcl_loss,
)

# isort: split
# Importable from this module before it was split by concept: kept so that no caller's import breaks.
from mheads.ensemble.ce_losses import _mix_terms  # noqa: F401
from mheads.ensemble.combine import ensemble_log_probs, ensemble_nll, mean_scores  # noqa: F401
from mheads.ensemble.loss_terms import (  # noqa: F401
    annealed_mcl_terms,
    assign,
    confident_mcl_terms,
    confident_terms,
    independent_terms,
    mcl_terms,
    relaxed_mcl_terms,
    scored_mcl_terms,
    smoothed_member_nll,
)

__all__ = [
    "ENSEMBLE_LOSSES",
    "ENSEMBLE_LOSS_NAMES",
    "LOSSES",
    "LOSS_ALIASES",
    "LOSS_NAMES",
    "LossSpec",
    "LossParams",
    "LossResult",
    "check_loss_params",
    "compute_loss",
    "ensemble_loss",
    "independent_ce",
    "score_averaged_ce",
    "prob_averaged_ce",
    "mcl_assignment",
    "mcl_loss",
    "mcl_ce_loss",
    "confident_mcl_loss",
    "relaxed_mcl_loss",
    "annealed_mcl_loss",
    "annealed_temperature",
    "scored_mcl_loss",
]


def _averaged_result(average, logits, targets, weights, label_smoothing) -> LossResult:
    _no_weights(average, weights)
    with torch.no_grad():
        own_ce = member_nll(logits, targets).mean(dim=1)
    return LossResult(average(logits, targets, label_smoothing), own_ce, None)


def _member_nll(
    logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    log_probs = member_log_probs(logits)
    return log_probs, smoothed_nll(log_probs, targets, smoothing)  # (M, B, C), (M, B)


# The losses of per-example member losses `(M, B)`, for any task (`ensemble_loss`; sMCL's point: MCL is
# agnostic to the loss). A task adds its own losses of the combined prediction (mheads.tasks).
ENSEMBLE_LOSSES: dict[str, LossSpec] = {
    "independent": LossSpec(terms=_independent),
    "mcl": LossSpec(terms=_mcl, assigns=True),
    "mcl_ce": LossSpec(terms=_mcl_ce, assigns=True),
    "cmcl": LossSpec(terms=_cmcl, assigns=True, penalty=True),
    "rwta": LossSpec(terms=_rwta, assigns=True),
    "amcl": LossSpec(terms=_amcl, assigns=True, single_winner=True),
    "mcl_scored": LossSpec(terms=_mcl_scored, assigns=True, scores=True),
}
ENSEMBLE_LOSS_NAMES = tuple(ENSEMBLE_LOSSES)
# Classification's name for "independent", accepted by `ensemble_loss` too, so a config's loss name means the
# same for every task.
LOSS_ALIASES = {"independent_ce": "independent"}

# The one registry of classification losses: configs validate ``loss.name`` against it; adding a loss is one
# entry here (or in ENSEMBLE_LOSSES, which every task shares).
LOSSES: dict[str, LossSpec] = {
    "independent_ce": ENSEMBLE_LOSSES["independent"],
    "score_averaged_ce": LossSpec(average=score_averaged_ce),
    "prob_averaged_ce": LossSpec(average=prob_averaged_ce),
    **{name: ENSEMBLE_LOSSES[name] for name in ("mcl", "mcl_ce", "cmcl", "rwta", "amcl", "mcl_scored")},
}
LOSS_NAMES = tuple(LOSSES)


def _check_params(k, num_members, mix, beta, epsilon, temperature, score_weight, label_smoothing) -> None:
    check_k(k, num_members)
    check_mix(mix)
    check_beta(beta)
    check_epsilon(epsilon)
    check_temperature(temperature)
    check_score_weight(score_weight)
    check_label_smoothing(label_smoothing)


def check_loss_params(
    num_members: int,
    *,
    k: int = 1,
    mix: float = 0.5,
    beta: float = 0.75,
    epsilon: float = 0.05,
    temperature: float = 0.0,
    score_weight: float = 1.0,
    generator: torch.Generator | None = None,
) -> None:
    """Check `ensemble_loss`'s hyperparameters for M = `num_members` without computing a loss (for the losses
    of a combined prediction, which read none of them but must refuse the same bad values)."""
    _check_params(k, num_members, mix, beta, epsilon, temperature, score_weight, 0.0)


def _check_spec(name: str, spec: LossSpec, k: int, score_logits, like: torch.Tensor) -> None:
    if spec.single_winner and k != 1:
        raise ValueError(f"k: got {k!r}; expected 1 for loss {name!r} (it anneals toward a single winner)")
    if spec.scores:
        check_score_logits(score_logits, like)


def _terms_result(spec: LossSpec, nll, penalty, params, weights, generator, score_logits) -> LossResult:
    if spec.terms is None:  # a loss of the combined prediction: its callers return before this
        raise ValueError(
            f"loss: got a loss of the members' combined prediction ({spec.average!r}); expected "
            "one of per-example member losses (ENSEMBLE_LOSS_NAMES)"
        )
    per_member, assignment = spec.terms(nll, penalty, params, weights, generator, score_logits)
    return LossResult(per_member.sum(), per_member.detach(), assignment)


def ensemble_loss(
    name: str,
    member_losses: torch.Tensor,
    *,
    k: int = 1,
    mix: float = 0.5,
    beta: float = 0.75,
    epsilon: float = 0.05,
    temperature: float = 0.0,
    score_logits: torch.Tensor | None = None,
    score_weight: float = 1.0,
    weights: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    penalty: torch.Tensor | None = None,
) -> LossResult:
    """The ensemble loss `name` (one of `ENSEMBLE_LOSS_NAMES`, or "independent_ce" for "independent") on
    per-example member losses `member_losses: (M, B)`, for any task (sMCL, Lee et al. NeurIPS 2016: MCL
    needs only a per-example loss). The result is the mean over the batch, as `compute_loss`.

    "independent": `sum_m mean_i l_mi`. "mcl": top-k winner-takes-all (section 6.2; ties at random with
    `generator`). "mcl_ce": `mix * mcl + (1 - mix) * independent`. "cmcl": confident MCL, the non-winners pay
    `beta * penalty` instead (`penalty: (M, B)` required; `KL(U || p_m)` for a categorical output).
    "rwta": relaxed WTA (`epsilon`). "amcl": annealed MCL's soft assignment at `temperature` (k = 1).
    "mcl_scored": MCL plus `score_weight` times the BCE of `score_logits: (M, B)` against the assignment
    (resilient MCL). `weights: (M, B)` are per-member example weights (bagging). Hyperparameters are checked
    whatever the loss. `compute_loss` on logits `(M, B, C)` is this on the members' cross-entropies.
    """
    name = LOSS_ALIASES.get(name, name)
    if name not in ENSEMBLE_LOSSES:
        names = ", ".join(ENSEMBLE_LOSS_NAMES + tuple(LOSS_ALIASES))
        raise ValueError(
            f"loss: got {name!r}; expected one of {names} (a task adds the losses of its "
            "combined prediction: mheads.tasks)"
        )
    check_member_losses(member_losses)
    _check_params(k, member_losses.shape[0], mix, beta, epsilon, temperature, score_weight, 0.0)
    check_weights(weights, member_losses)
    spec = ENSEMBLE_LOSSES[name]
    _check_spec(name, spec, k, score_logits, member_losses)
    if spec.penalty:
        if not isinstance(penalty, torch.Tensor) or penalty.shape != member_losses.shape:
            got = tuple(penalty.shape) if isinstance(penalty, torch.Tensor) else type(penalty).__name__
            raise ValueError(
                f"penalty: got {got}; loss {name!r} needs the non-winners' term, a tensor of "
                f"shape (M, B) = {tuple(member_losses.shape)} (defined for categorical outputs: "
                "KL(U || p_m))"
            )
    params = LossParams(k, mix, beta, epsilon, temperature, score_weight)
    return _terms_result(spec, member_losses, penalty, params, weights, generator, score_logits)


def compute_loss(
    name: str,
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    k: int = 1,
    mix: float = 0.5,
    beta: float = 0.75,
    epsilon: float = 0.05,
    temperature: float = 0.0,
    score_logits: torch.Tensor | None = None,
    score_weight: float = 1.0,
    weights: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    label_smoothing: float = 0.0,
) -> LossResult:
    """Compute the loss named `name` (one of `LOSS_NAMES`) on `logits: (M, B, C)` and `targets: (B,)`.

    `k` (members per example, 1..M) is used by "mcl", "mcl_ce", "cmcl", "rwta" and "mcl_scored" ("amcl"
    takes only k = 1); `mix` (weight of the MCL term in "mcl_ce": `mix * mcl + (1 - mix) * independent_ce`,
    in [0, 1]) by "mcl_ce"; `beta` (>= 0) by "cmcl"; `epsilon` (in [0, 1), the non-winners' share) by "rwta";
    `temperature` (>= 0, this iteration's `annealed_temperature`; 0 is MCL) by "amcl"; `score_logits: (M, B)`
    (required) and `score_weight` (>= 0) by "mcl_scored". The numbers are validated whatever the loss.
    `weights: (M, B)` per-member example weights are accepted by every loss except "score_averaged_ce" and
    "prob_averaged_ce". Apart from those two, this is `ensemble_loss` on the members' (smoothed)
    cross-entropies `(M, B)`, with `KL(U || p_m)` as confident MCL's penalty.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss name {name!r}; valid names are {', '.join(LOSS_NAMES)}")
    check_inputs(logits, targets)
    _check_params(k, logits.shape[0], mix, beta, epsilon, temperature, score_weight, label_smoothing)
    check_weights(weights, logits)
    spec = LOSSES[name]
    _check_spec(name, spec, k, score_logits, logits)
    if spec.average is not None:
        return _averaged_result(spec.average, logits, targets, weights, label_smoothing)
    params = LossParams(k, mix, beta, epsilon, temperature, score_weight, label_smoothing)
    log_probs, nll = _member_nll(logits, targets, label_smoothing)
    penalty = uniform_kl(log_probs) if spec.penalty else None
    return _terms_result(spec, nll, penalty, params, weights, generator, score_logits)
