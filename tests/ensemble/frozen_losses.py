"""A frozen copy of mheads.ensemble.losses and loss_terms as they were before the per-example refactor
(issue 32, commit bad65a0): test_losses_unchanged.py checks that today's classification losses give exactly
these values and gradients. Never edit it; it is the reference."""
# ruff: noqa

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mheads.core.checks import check_int, check_number, is_number
from mheads.ensemble.assignment import topk_assignment
from mheads.ensemble.combine import (
    check_logits_targets,
    ensemble_log_probs,
    ensemble_nll,
    mean_scores,
    member_log_probs,
    member_nll,
    pick_targets,
)


# ---------------------------------------------------------------- argument checks


def check_k(k: int, num_members: int) -> None:
    """`k`, members assigned per example, must be an integer in [1, M]."""
    check_int("k", k, 1, num_members)


def check_mix(mix: float) -> None:
    """`mix`, the weight of the MCL term in `mcl_ce_loss`, must be a number in [0, 1]."""
    check_number("mix", mix, 0.0, 1.0)


def check_beta(beta: float) -> None:
    """`beta`, the confident-MCL penalty weight, must be a finite number >= 0."""
    check_number("beta", beta, 0.0)


def check_epsilon(epsilon: float) -> None:
    """`epsilon`, the weight relaxed winner-takes-all gives the non-assigned members, must lie in [0, 1)."""
    if not (is_number(epsilon) and 0.0 <= epsilon < 1.0):
        raise ValueError(f"epsilon: got {epsilon!r}; expected a number >= 0.0 and < 1.0")


def check_temperature(temperature: float) -> None:
    """`temperature`, annealed MCL's current temperature, must be a finite number >= 0 (0: plain MCL)."""
    check_number("temperature", temperature, 0.0)


def check_score_weight(score_weight: float) -> None:
    """`score_weight`, the weight of the scoring heads' cross-entropy, must be a finite number >= 0."""
    check_number("score_weight", score_weight, 0.0)


def check_score_logits(score_logits: torch.Tensor | None, logits: torch.Tensor) -> None:
    """`score_logits`: a floating `(M, B)` tensor on the logits' device (the scoring heads' outputs)."""
    expected = tuple(logits.shape[:2])
    if not isinstance(score_logits, torch.Tensor):
        raise ValueError(
            f"score_logits: got {type(score_logits).__name__}; expected a floating tensor of "
            f"shape (M, B) = {expected} (the scoring heads' logits, "
            "TreeNet.forward_with_scores)"
        )
    if tuple(score_logits.shape) != expected or not score_logits.is_floating_point():
        raise ValueError(
            f"score_logits: got {score_logits.dtype} of shape {tuple(score_logits.shape)}; "
            f"expected a floating tensor of shape (M, B) = {expected}"
        )
    if score_logits.device != logits.device:
        raise ValueError(
            f"score_logits: got a tensor on {score_logits.device}; expected one on the logits' "
            f"device {logits.device}"
        )


def check_inputs(logits: torch.Tensor, targets: torch.Tensor) -> None:
    """Shapes and dtypes always; target values only on CPU, where reading them costs no device sync."""
    check_logits_targets(logits, targets, check_values=logits.device.type == "cpu")


def check_weights(weights: torch.Tensor | None, logits: torch.Tensor) -> None:
    """`weights`: None or a real `(M, B)` tensor on the logits' device; finite and >= 0 (checked on CPU)."""
    if weights is None:
        return
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"weights must be a torch.Tensor or None, got {type(weights).__name__}")
    expected = tuple(logits.shape[:2])
    if tuple(weights.shape) != expected:
        raise ValueError(f"weights must have shape (M, B) = {expected}, got shape {tuple(weights.shape)}")
    if weights.dtype == torch.bool or weights.dtype.is_complex:
        raise ValueError(f"weights must be a real floating or integer tensor, got dtype {weights.dtype}")
    if weights.device != logits.device:
        raise ValueError(f"weights are on {weights.device} but logits are on {logits.device}")
    if weights.device.type == "cpu":
        bad = ~torch.isfinite(weights.double()) | (weights < 0)
        if bool(bad.any()):
            raise ValueError(f"weights must be finite and >= 0, got {weights[bad][0].item()!r}")


# ---------------------------------------------------------------- per-member terms


def member_sums(terms: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """`terms: (M, B)` -> each member's contribution `sum_i w_mi * terms_mi / B`, `(M,)`."""
    if weights is not None:
        terms = terms * weights.to(terms.dtype)
    return terms.sum(dim=1) / terms.shape[1]


def flag_non_finite(per_member: torch.Tensor, *terms: torch.Tensor) -> torch.Tensor:
    """Carry NaN/Inf of any per-example term `(M, B)` into its member's contribution `(M,)`; a no-op when all
    are finite. A masked-out term does not reach the loss value, yet its member's logits still receive NaN
    gradients through log-softmax's backward pass; adding `0 * term` (detached) makes the loss say so."""
    for term in terms:
        per_member = per_member + (term.detach() * 0.0).sum(dim=1)
    return per_member


def assign(
    costs: torch.Tensor, k: int, weights: torch.Tensor | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Top-k assignment on `costs: (M, B)`; members with weight 0 for an example are not eligible for it."""
    eligible = None if weights is None else weights > 0
    return topk_assignment(costs.detach(), k, generator=generator, eligible=eligible)


def given_assignment(assignment: torch.Tensor, nll: torch.Tensor) -> torch.Tensor:
    """Check a caller-supplied assignment against `nll: (M, B)`."""
    if not isinstance(assignment, torch.Tensor) or assignment.dtype != torch.bool:
        raise ValueError(f"assignment must be a bool tensor of shape (M, B), got {assignment!r:.80}")
    if assignment.shape != nll.shape:
        raise ValueError(
            f"assignment must have shape (M, B) = {tuple(nll.shape)}, got {tuple(assignment.shape)}"
        )
    return assignment.to(nll.device)


def independent_terms(nll: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """`nll: (M, B)` -> `(M,)`: each member's (weighted) mean cross-entropy."""
    return member_sums(nll, weights)


def mcl_terms(
    nll: torch.Tensor,
    k: int,
    generator: torch.Generator | None,
    weights: torch.Tensor | None,
    assignment: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`nll: (M, B)` -> MCL contributions `(M,)` and the assignment `(M, B)` bool."""
    if assignment is None:
        assignment = assign(nll, k, weights, generator)
    else:
        assignment = given_assignment(assignment, nll)
    # torch.where, not a product with the mask: 0 * NaN would leak into the gradient of assigned terms.
    per_member = member_sums(torch.where(assignment, nll, 0.0), weights)
    return flag_non_finite(per_member, nll), assignment


def confident_mcl_terms(
    log_probs: torch.Tensor,
    nll: torch.Tensor,
    k: int,
    beta: float,
    generator: torch.Generator | None,
    weights: torch.Tensor | None,
    assignment: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`log_probs: (M, B, C)`, `nll: (M, B)` -> confident-MCL contributions `(M,)` and the assignment."""
    # KL(U || p_m) = sum_c (1/C) log((1/C) / p_mc) = -log C - mean_c log p_mc
    kl_uniform = -math.log(log_probs.shape[-1]) - log_probs.mean(dim=-1)  # (M, B)
    if assignment is None:
        # Per example the loss is beta * sum_m KL_m + sum_m alpha_m (CE_m - beta KL_m), so the k members with
        # the lowest CE_m - beta KL_m minimise it exactly (Lee et al. 2017, their "cmcl_v0").
        assignment = assign(nll - beta * kl_uniform, k, weights, generator)
    else:
        assignment = given_assignment(assignment, nll)
    per_member = member_sums(torch.where(assignment, nll, beta * kl_uniform), weights)
    return flag_non_finite(per_member, nll, kl_uniform), assignment


def relaxed_mcl_terms(
    nll: torch.Tensor,
    k: int,
    epsilon: float,
    generator: torch.Generator | None,
    weights: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`nll: (M, B)` -> relaxed winner-takes-all contributions `(M,)` and the (MCL) assignment `(M, B)` bool.

    Each of the k assigned members weighs its term by `1 - epsilon`, each of the `M - k` others by
    `k epsilon / (M - k)`, so an example's weights sum to k as in MCL. With `epsilon = 0`, or no member left
    out (k = M), it is `mcl_terms` itself, draw for draw."""
    num_members = nll.shape[0]
    if epsilon == 0 or k == num_members:
        return mcl_terms(nll, k, generator, weights, None)
    assignment = assign(nll, k, weights, generator)
    share = k * epsilon / (num_members - k)
    per_member = member_sums(torch.where(assignment, (1.0 - epsilon) * nll, share * nll), weights)
    return flag_non_finite(per_member, nll), assignment


def soft_assignment(nll: torch.Tensor, temperature: float, weights: torch.Tensor | None) -> torch.Tensor:
    """Annealed MCL's Boltzmann assignment `q_m = softmax_m(-nll_m / T)` per example, `(M, B)`, detached.

    Computed from `nll - min_m nll`, so that a tiny T gives the one-hot winner (ties share) instead of NaN.
    Members with a non-finite cost or bagging weight 0 get q = 0; an example with no such member, q = 0."""
    costs = nll.detach()
    ok = torch.isfinite(costs)
    if weights is not None:
        ok = ok & (weights > 0)
    costs = torch.where(ok, costs, math.inf)
    shifted = costs - costs.min(dim=0, keepdim=True).values
    q = torch.softmax(torch.where(ok, -shifted / temperature, -math.inf), dim=0)
    return torch.where(ok.any(dim=0, keepdim=True), q, 0.0)


def annealed_mcl_terms(
    nll: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None,
    weights: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`nll: (M, B)` -> annealed-MCL contributions `(M,)` and the hard (k = 1, MCL) assignment `(M, B)` bool.

    `T > 0`: `sum_i w_mi q_mi nll_mi / B` with q from `soft_assignment`; `T = 0`: `mcl_terms` with k = 1, draw
    for draw. The hard assignment is returned in both cases (the win counts of the collapse diagnostic)."""
    if temperature == 0:
        return mcl_terms(nll, 1, generator, weights, None)
    assignment = assign(nll, 1, weights, generator)
    q = soft_assignment(nll, temperature, weights)
    # torch.where, not q * nll alone: 0 * inf (a member with q = 0 and an infinite loss) would be NaN.
    per_member = member_sums(torch.where(q > 0, q * nll, 0.0), weights)
    return flag_non_finite(per_member, nll), assignment


def scored_mcl_terms(
    nll: torch.Tensor,
    score_logits: torch.Tensor,
    k: int,
    score_weight: float,
    generator: torch.Generator | None,
    weights: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`nll: (M, B)`, `score_logits: (M, B)` -> MCL contributions plus each member's share of
    `score_weight * mean_{m,i} BCE(score_logits_mi, alpha_mi)` `(M,)`, and the assignment `(M, B)` bool.

    The target alpha is the (detached) MCL assignment; the bagging weights weigh the MCL terms only, since
    the scores learn the assignment training actually made."""
    mcl_part, assignment = mcl_terms(nll, k, generator, weights, None)
    target = assignment.to(score_logits.dtype)
    bce = F.binary_cross_entropy_with_logits(score_logits, target, reduction="none")  # (M, B)
    return mcl_part + score_weight * bce.mean(dim=1) / bce.shape[0], assignment


def independent_ce(
    logits: torch.Tensor, targets: torch.Tensor, *, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Sum over members of each member's mean cross-entropy: each member gets exactly the gradient it would
    get training alone. `logits: (M, B, C)`, `targets: (B,)`, `weights: (M, B)` -> scalar."""
    check_inputs(logits, targets)
    check_weights(weights, logits)
    return independent_terms(member_nll(logits, targets), weights).sum()


def smoothed_nll(log_probs: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Cross-entropy against targets smoothed by ``label_smoothing`` = eps (Szegedy et al. 2016): ``(1 - eps)
    * -log p(y) + eps * mean_c -log p(c)``. ``log_probs: (..., B, C)``, ``targets: (B,)`` -> ``(..., B)``."""
    nll = -pick_targets(log_probs, targets)
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * log_probs.mean(dim=-1)
    return nll


def score_averaged_ce(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy of the mean of the members' scores (section 6.1, "Score-Averaged").

    Every member receives the same gradient with respect to its scores, 1/M of that of the mean.
    `logits: (M, B, C)`, `targets: (B,)` -> scalar.
    """
    check_inputs(logits, targets)
    if label_smoothing:
        return smoothed_nll(
            member_log_probs(mean_scores(logits).unsqueeze(0)), targets, label_smoothing
        ).mean()
    return member_nll(mean_scores(logits).unsqueeze(0), targets).mean()


def prob_averaged_ce(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy of the mean of the members' probabilities (section 6.1, "Prob-Averaged"), appendix B.

    `-log(mean_m softmax(s_m)[y])`, computed as `-(logsumexp_m log_softmax(s_m)[y] - log M)` so that it stays
    finite where every member's softmax underflows. `logits: (M, B, C)`, `targets: (B,)` -> scalar.
    """
    check_inputs(logits, targets)
    if label_smoothing:
        return smoothed_nll(ensemble_log_probs(logits), targets, label_smoothing).mean()
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
) -> torch.Tensor:
    """The oracle set-loss with top-k assignment (section 6.2, appendix C, algorithm 2).

    `(1/B) sum_i sum_m alpha_mi w_mi CE_m(i)` with alpha from `mcl_assignment` (or the given `assignment:
    (M, B)` bool). Only assigned members receive a gradient for an example. With k = M it equals
    `independent_ce` exactly. `logits: (M, B, C)`, `targets: (B,)` -> scalar.
    """
    check_inputs(logits, targets)
    check_k(k, logits.shape[0])
    check_weights(weights, logits)
    return mcl_terms(member_nll(logits, targets), k, generator, weights, assignment)[0].sum()


def mcl_ce_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    k: int = 1,
    mix: float = 0.5,
    generator: torch.Generator | None = None,
    *,
    weights: torch.Tensor | None = None,
    assignment: torch.Tensor | None = None,
) -> torch.Tensor:
    """MCL linearly combined with cross-entropy (section 6.2): `mix * mcl_loss + (1 - mix) * independent_ce`.

    `mix` in [0, 1] is the weight of the MCL term: 1 is pure MCL, 0 a standard ensemble. Both terms use the
    same `weights`. `logits: (M, B, C)`, `targets: (B,)` -> scalar.
    """
    check_inputs(logits, targets)
    check_k(k, logits.shape[0])
    check_mix(mix)
    check_weights(weights, logits)
    return _mix_terms(member_nll(logits, targets), k, mix, generator, weights, assignment)[0].sum()


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
    log_probs = member_log_probs(logits)
    nll = -pick_targets(log_probs, targets)
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


def _averaged_result(average, logits, targets, weights, label_smoothing) -> LossResult:
    if weights is not None:
        raise ValueError(
            f"loss {average.__name__!r} averages the members and takes no per-member weights, got some"
        )
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


def _independent(logits, targets, p, weights, generator, score_logits):
    _, nll = _member_nll(logits, targets, p.label_smoothing)
    return independent_terms(nll, weights), None


def _mcl(logits, targets, p, weights, generator, score_logits):
    _, nll = _member_nll(logits, targets, p.label_smoothing)
    return mcl_terms(nll, p.k, generator, weights, None)


def _mcl_ce(logits, targets, p, weights, generator, score_logits):
    _, nll = _member_nll(logits, targets, p.label_smoothing)
    return _mix_terms(nll, p.k, p.mix, generator, weights, None)


def _cmcl(logits, targets, p, weights, generator, score_logits):
    log_probs, nll = _member_nll(logits, targets, p.label_smoothing)
    return confident_mcl_terms(log_probs, nll, p.k, p.beta, generator, weights, None)


def _rwta(logits, targets, p, weights, generator, score_logits):
    _, nll = _member_nll(logits, targets, p.label_smoothing)
    return relaxed_mcl_terms(nll, p.k, p.epsilon, generator, weights)


def _amcl(logits, targets, p, weights, generator, score_logits):
    _, nll = _member_nll(logits, targets, p.label_smoothing)
    return annealed_mcl_terms(nll, p.temperature, generator, weights)


def _mcl_scored(logits, targets, p, weights, generator, score_logits):
    _, nll = _member_nll(logits, targets, p.label_smoothing)
    return scored_mcl_terms(nll, score_logits.to(nll.dtype), p.k, p.score_weight, generator, weights)


@dataclass(frozen=True)
class LossSpec:
    """A loss selectable by name. ``terms`` maps (logits, targets, params: `LossParams`, weights, generator,
    score_logits) to ``(per_member (M,), assignment (M, B) or None)``; ``average`` instead names a loss of the
    members' combined prediction (it takes no per-member weights). ``assigns``: it picks members per example
    (uses ``loss.k``; its assignment feeds the win counts). ``single_winner``: it takes only k = 1.
    ``scores``: it needs the scoring heads' logits (training calls ``TreeNet.forward_with_scores``)."""

    terms: Callable | None = None
    average: Callable | None = None
    assigns: bool = False
    single_winner: bool = False
    scores: bool = False


# The one registry of losses: configs validate ``loss.name`` against it; adding a loss is one entry here.
LOSSES: dict[str, LossSpec] = {
    "independent_ce": LossSpec(terms=_independent),
    "score_averaged_ce": LossSpec(average=score_averaged_ce),
    "prob_averaged_ce": LossSpec(average=prob_averaged_ce),
    "mcl": LossSpec(terms=_mcl, assigns=True),
    "mcl_ce": LossSpec(terms=_mcl_ce, assigns=True),
    "cmcl": LossSpec(terms=_cmcl, assigns=True),
    "rwta": LossSpec(terms=_rwta, assigns=True),
    "amcl": LossSpec(terms=_amcl, assigns=True, single_winner=True),
    "mcl_scored": LossSpec(terms=_mcl_scored, assigns=True, scores=True),
}
LOSS_NAMES = tuple(LOSSES)


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
    "prob_averaged_ce".
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss name {name!r}; valid names are {', '.join(LOSS_NAMES)}")
    check_inputs(logits, targets)
    check_k(k, logits.shape[0])
    check_mix(mix)
    check_beta(beta)
    check_epsilon(epsilon)
    check_temperature(temperature)
    check_score_weight(score_weight)
    check_weights(weights, logits)
    check_number("label_smoothing", label_smoothing, 0.0, 1.0)
    spec = LOSSES[name]
    if spec.single_winner and k != 1:
        raise ValueError(f"k: got {k!r}; expected 1 for loss {name!r} (it anneals toward a single winner)")
    if spec.scores:
        check_score_logits(score_logits, logits)
    if spec.average is not None:
        return _averaged_result(spec.average, logits, targets, weights, label_smoothing)
    params = LossParams(k, mix, beta, epsilon, temperature, score_weight, label_smoothing)
    per_member, assignment = spec.terms(logits, targets, params, weights, generator, score_logits)
    return LossResult(per_member.sum(), per_member.detach(), assignment)
