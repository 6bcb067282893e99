"""Ensemble-aware losses on member logits `(M, B, C)` and integer targets `(B,)` (paper section 6).

All losses are means over the batch. The per-member losses (`independent_ce`, the MCL family: `mcl_loss`,
`mcl_ce_loss`, `confident_mcl_loss`, `relaxed_mcl_loss`, `annealed_mcl_loss`, `scored_mcl_loss`) accept
`weights: (M, B)`, per-member example weights (bagging: how often example i occurs in member m's bootstrap
sample); member m then contributes `sum_i w_mi * l_mi / B`. The averaged losses (`score_averaged_ce`,
`prob_averaged_ce`) couple the members through one prediction and take none.

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

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mheads.ensemble.combine import (
    ensemble_log_probs,
    ensemble_nll,
    mean_scores,
    member_log_probs,
    member_nll,
)
from mheads.ensemble.loss_terms import (
    annealed_mcl_terms,
    assign,
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
    confident_mcl_terms,
    confident_terms,
    independent_terms,
    mcl_terms,
    relaxed_mcl_terms,
    scored_mcl_terms,
    smoothed_member_nll,
    smoothed_nll,
    uniform_kl,
)
from mheads.ensemble.wta import (  # the winner-takes-all family, re-exported for callers of this module
    annealed_mcl_loss,
    annealed_temperature,
    relaxed_mcl_loss,
    scored_mcl_loss,
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


def independent_ce(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Sum over members of each member's mean cross-entropy: each member gets exactly the gradient it would
    get training alone. `logits: (M, B, C)`, `targets: (B,)`, `weights: (M, B)` -> scalar."""
    check_inputs(logits, targets)
    check_weights(weights, logits)
    check_label_smoothing(label_smoothing)
    return independent_terms(smoothed_member_nll(logits, targets, label_smoothing), weights).sum()


def score_averaged_ce(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0, *, weights: None = None
) -> torch.Tensor:
    """Cross-entropy of the mean of the members' scores (section 6.1, "Score-Averaged").

    Every member receives the same gradient with respect to its scores, 1/M of that of the mean.
    `logits: (M, B, C)`, `targets: (B,)` -> scalar. `weights` is refused (as by `compute_loss`): the members
    are averaged, not weighted one by one.
    """
    check_inputs(logits, targets)
    _no_weights(score_averaged_ce, weights)
    check_label_smoothing(label_smoothing)
    if label_smoothing:
        return smoothed_nll(
            member_log_probs(mean_scores(logits).unsqueeze(0)), targets, label_smoothing
        ).mean()
    return member_nll(mean_scores(logits).unsqueeze(0), targets).mean()


def prob_averaged_ce(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0, *, weights: None = None
) -> torch.Tensor:
    """Cross-entropy of the mean of the members' probabilities (section 6.1, "Prob-Averaged"), appendix B.

    `-log(mean_m softmax(s_m)[y])`, computed as `-(logsumexp_m log_softmax(s_m)[y] - log M)` so that it stays
    finite where every member's softmax underflows. `logits: (M, B, C)`, `targets: (B,)` -> scalar.
    `weights` is refused, as by `score_averaged_ce`.
    """
    check_inputs(logits, targets)
    _no_weights(prob_averaged_ce, weights)
    check_label_smoothing(label_smoothing)
    if label_smoothing:
        # (1, B, C): pick_targets reads member-shaped values (before issue 32 this path raised)
        return smoothed_nll(ensemble_log_probs(logits).unsqueeze(0), targets, label_smoothing).mean()
    return ensemble_nll(logits, targets).mean()


def mcl_assignment(
    logits: torch.Tensor,
    targets: torch.Tensor,
    k: int = 1,
    *,
    weights: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The MCL assignment alpha (section 6.2): per example, the k members with the lowest cross-entropy.

    Ties are broken uniformly at random with `generator`. The assignment uses the unweighted per-example
    cross-entropy, but a member whose weight for an example is 0 (not in its bootstrap sample) is never
    assigned that example; an example with fewer than k such members is assigned to fewer.
    Returns `(M, B)` bool.
    """
    check_inputs(logits, targets)
    check_k(k, logits.shape[0])
    check_weights(weights, logits)
    with torch.no_grad():
        return assign(member_nll(logits, targets), k, weights, generator)


def mcl_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    k: int = 1,
    generator: torch.Generator | None = None,
    *,
    weights: torch.Tensor | None = None,
    assignment: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The oracle set-loss with top-k assignment (section 6.2, appendix C, algorithm 2).

    `(1/B) sum_i sum_m alpha_mi w_mi CE_m(i)` with alpha from `mcl_assignment` (or the given `assignment:
    (M, B)` bool). Only assigned members receive a gradient for an example. With k = M it equals
    `independent_ce` exactly. `logits: (M, B, C)`, `targets: (B,)` -> scalar.
    """
    check_inputs(logits, targets)
    check_k(k, logits.shape[0])
    check_weights(weights, logits)
    check_label_smoothing(label_smoothing)
    nll = smoothed_member_nll(logits, targets, label_smoothing)
    return mcl_terms(nll, k, generator, weights, assignment)[0].sum()


def mcl_ce_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    k: int = 1,
    mix: float = 0.5,
    generator: torch.Generator | None = None,
    *,
    weights: torch.Tensor | None = None,
    assignment: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """MCL linearly combined with cross-entropy (section 6.2): `mix * mcl_loss + (1 - mix) * independent_ce`.

    `mix` in [0, 1] is the weight of the MCL term: 1 is pure MCL, 0 a standard ensemble. Both terms use the
    same `weights`. `logits: (M, B, C)`, `targets: (B,)` -> scalar.
    """
    check_inputs(logits, targets)
    check_k(k, logits.shape[0])
    check_mix(mix)
    check_weights(weights, logits)
    check_label_smoothing(label_smoothing)
    nll = smoothed_member_nll(logits, targets, label_smoothing)
    return _mix_terms(nll, k, mix, generator, weights, assignment)[0].sum()


def _mix_terms(nll, k, mix, generator, weights, assignment):
    mcl_part, assignment = mcl_terms(nll, k, generator, weights, assignment)
    return mix * mcl_part + (1.0 - mix) * independent_terms(nll, weights), assignment


def confident_mcl_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    k: int = 1,
    beta: float = 0.75,
    generator: torch.Generator | None = None,
    *,
    weights: torch.Tensor | None = None,
    assignment: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Confident MCL (Lee et al., ICML 2017), beyond the paper: members not assigned an example are pushed
    toward the uniform distribution on it instead of being left free to be over-confident.

    `(1/B) sum_i sum_m w_mi [alpha_mi CE_m(i) + beta (1 - alpha_mi) KL(U || p_m(x_i))]` with
    `KL(U || p) = -log C - (1/C) sum_c log p_c`. The assignment takes the k members with the lowest
    `CE_m(i) - beta KL(U || p_m(x_i))`, which minimises this objective per example (for beta = 0 it is the MCL
    assignment and the loss equals `mcl_loss`). The paper's feature sharing and stochastic labelling are
    not included. `logits: (M, B, C)`, `targets: (B,)` -> scalar.
    """
    check_inputs(logits, targets)
    check_k(k, logits.shape[0])
    check_beta(beta)
    check_weights(weights, logits)
    check_label_smoothing(label_smoothing)
    log_probs = member_log_probs(logits)
    nll = smoothed_nll(log_probs, targets, label_smoothing)
    return confident_mcl_terms(log_probs, nll, k, beta, generator, weights, assignment)[0].sum()


@dataclass(frozen=True)
class LossResult:
    """What `compute_loss` returns.

    Attributes:
        loss: scalar tensor to backpropagate.
        per_member: `(M,)`, detached. For the per-member losses each member's contribution (they sum to
            `loss`; for "mcl_scored" it includes the member's share of the scoring term); a member with a
            non-finite per-example term shows it here even where that term was masked out, since its gradient
            is non-finite anyway. For the averaged losses, each member's own mean cross-entropy (they do not
            sum to `loss`).
        assignment: `(M, B)` bool for the losses that assign (`LossSpec.assigns`: "mcl", "mcl_ce", "cmcl",
            "rwta", "amcl" (its hard k = 1 assignment, whatever the temperature), "mcl_scored"), else None.
    """

    loss: torch.Tensor
    per_member: torch.Tensor
    assignment: torch.Tensor | None


def _no_weights(average, weights) -> None:
    if weights is not None:
        raise ValueError(
            f"weights: loss {average.__name__!r} averages the members and takes no per-member "
            "weights; got some (expected None)"
        )


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


@dataclass(frozen=True)
class LossParams:
    """The hyperparameters `compute_loss` hands to a loss's ``terms`` (each loss reads the ones it uses)."""

    k: int = 1
    mix: float = 0.5
    beta: float = 0.75
    epsilon: float = 0.05
    temperature: float = 0.0
    score_weight: float = 1.0
    label_smoothing: float = 0.0


# Every ``terms`` maps per-example member losses to the members' contributions, whatever the task:
# (nll (M, B), penalty (M, B) or None, params, weights, generator, score_logits)
# -> ((M,), assignment or None).


def _independent(nll, penalty, p, weights, generator, score_logits):
    return independent_terms(nll, weights), None


def _mcl(nll, penalty, p, weights, generator, score_logits):
    return mcl_terms(nll, p.k, generator, weights, None)


def _mcl_ce(nll, penalty, p, weights, generator, score_logits):
    return _mix_terms(nll, p.k, p.mix, generator, weights, None)


def _cmcl(nll, penalty, p, weights, generator, score_logits):
    return confident_terms(nll, penalty, p.k, p.beta, generator, weights, None)


def _rwta(nll, penalty, p, weights, generator, score_logits):
    return relaxed_mcl_terms(nll, p.k, p.epsilon, generator, weights)


def _amcl(nll, penalty, p, weights, generator, score_logits):
    return annealed_mcl_terms(nll, p.temperature, generator, weights)


def _mcl_scored(nll, penalty, p, weights, generator, score_logits):
    return scored_mcl_terms(nll, score_logits.to(nll.dtype), p.k, p.score_weight, generator, weights)


@dataclass(frozen=True)
class LossSpec:
    """A loss selectable by name. ``terms`` maps per-example member losses (nll: `(M, B)`, penalty: `(M, B)`
    or None, params: `LossParams`, weights, generator, score_logits) to ``(per_member (M,), assignment (M, B)
    or None)``; ``average`` instead names a loss of the members' combined prediction (it takes no per-member
    weights). ``assigns``: it picks members per example (uses ``loss.k``; its assignment feeds the win
    counts). ``single_winner``: it takes only k = 1. ``scores``: it needs the scoring heads' logits (training
    calls ``TreeNet.forward_with_scores``). ``penalty``: it needs the non-winners' per-example term (confident
    MCL: `KL(U || p_m)`, defined only for categorical outputs)."""

    terms: Callable | None = None
    average: Callable | None = None
    assigns: bool = False
    single_winner: bool = False
    scores: bool = False
    penalty: bool = False


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
