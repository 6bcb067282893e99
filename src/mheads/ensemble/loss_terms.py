"""Building blocks of the losses in `mheads.ensemble.losses`: argument checks and per-member loss terms.

Each `*_terms` function reads per-example member losses `nll: (M, B)` (whatever the task: cross-entropy,
squared error, a Gaussian NLL, an image's mean pixel cross-entropy) and returns the members' contributions
`(M,)` (their sum is the loss) and, for the MCL family, the assignment `(M, B)` bool.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mheads.core.checks import check_int, check_number, is_number
from mheads.ensemble.assignment import topk_assignment
from mheads.ensemble.combine import check_logits_targets, member_log_probs, pick_targets

__all__ = [
    "check_k",
    "check_mix",
    "check_beta",
    "check_epsilon",
    "check_temperature",
    "check_score_weight",
    "check_score_logits",
    "check_inputs",
    "check_member_losses",
    "check_weights",
    "confident_terms",
    "uniform_kl",
    "check_label_smoothing",
    "smoothed_nll",
    "smoothed_member_nll",
]


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


def check_label_smoothing(label_smoothing: float) -> None:
    """`label_smoothing`, the target share spread over the unmasked classes, must be a number in [0, 1]."""
    check_number("label_smoothing", label_smoothing, 0.0, 1.0)


def smoothed_nll(log_probs: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Cross-entropy against targets smoothed by ``label_smoothing`` = eps (Szegedy et al. 2016): ``(1 - eps)
    * -log p(y) + eps * mean_c -log p(c)``. ``log_probs: (..., B, C)``, ``targets: (B,)`` -> ``(..., B)``.

    The mean runs over the classes not masked with -inf in that row (member and example): a masked class
    gets target mass 0 and adds 0 to the loss and its gradient. Rows without -inf: the plain mean."""
    nll = -pick_targets(log_probs, targets)
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * _unmasked_mean(log_probs)
    return nll


def _unmasked_mean(log_probs: torch.Tensor) -> torch.Tensor:
    """Mean of `log_probs` over its last dim, leaving out -inf entries (masked classes) per row. Rows with no
    -inf keep the plain mean, bit for bit; no host sync (both means are formed, `where` picks per row)."""
    masked = log_probs == float("-inf")
    kept = (~masked).sum(dim=-1).clamp(min=1)
    unmasked = log_probs.masked_fill(masked, 0.0).sum(dim=-1) / kept
    return torch.where(masked.any(dim=-1), unmasked, log_probs.mean(dim=-1))


def smoothed_member_nll(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Each member's (smoothed) cross-entropy per example, `(M, B, C), (B,) -> (M, B)`: what
    `compute_loss` hands the per-member losses."""
    return smoothed_nll(member_log_probs(logits), targets, label_smoothing)


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


def check_member_losses(losses: torch.Tensor) -> None:
    """`losses`: per-example member losses, a floating `(M, B)` tensor with M, B >= 1 (non-finite values are
    not an error: the losses report them in their member's contribution)."""
    if not isinstance(losses, torch.Tensor):
        raise TypeError(f"member_losses must be a torch.Tensor, got {type(losses).__name__}")
    if losses.ndim != 2 or min(losses.shape) < 1 or not losses.is_floating_point():
        raise ValueError(
            f"member_losses: got {losses.dtype} of shape {tuple(losses.shape)}; expected a "
            "floating tensor of shape (M, B) with M, B >= 1"
        )


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


def uniform_kl(log_probs: torch.Tensor) -> torch.Tensor:
    """`KL(U || p)` over the last axis: `(..., C)` log-probabilities -> `(...)`, `-log C - mean_c log p_c`."""
    # KL(U || p_m) = sum_c (1/C) log((1/C) / p_mc) = -log C - mean_c log p_mc
    return -math.log(log_probs.shape[-1]) - log_probs.mean(dim=-1)


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
    return confident_terms(nll, uniform_kl(log_probs), k, beta, generator, weights, assignment)


def confident_terms(
    nll: torch.Tensor,
    penalty: torch.Tensor,
    k: int,
    beta: float,
    generator: torch.Generator | None,
    weights: torch.Tensor | None,
    assignment: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`nll: (M, B)`, `penalty: (M, B)` (the non-winners' term; for a categorical output `KL(U || p_m)`,
    `uniform_kl`) -> confident-MCL contributions `(M,)` and the assignment `(M, B)` bool."""
    if assignment is None:
        # Per example the loss is beta * sum_m KL_m + sum_m alpha_m (CE_m - beta KL_m), so the k members with
        # the lowest CE_m - beta KL_m minimise it exactly (Lee et al. 2017, their "cmcl_v0").
        assignment = assign(nll - beta * penalty, k, weights, generator)
    else:
        assignment = given_assignment(assignment, nll)
    per_member = member_sums(torch.where(assignment, nll, beta * penalty), weights)
    return flag_non_finite(per_member, nll, penalty), assignment


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
    the scores learn the assignment training actually made. A -inf score logit (a hypothesis switched off,
    probability 0) is never assigned an example (like a bagging weight of 0): the example goes to the closest
    hypotheses with a finite score, and the -inf score costs 0 (torch's BCE gives NaN). An example whose every
    score is -inf keeps every hypothesis eligible, so its winner's -inf score costs inf: the loss says so
    (training stops), as metrics refuse such outputs."""
    off = score_logits.detach() == -torch.inf
    eligible = ~off | off.all(dim=0, keepdim=True)  # (M, B)
    if weights is not None:
        eligible = eligible & (weights > 0)
    # The draws are those of `assign`: where no score is -inf, the assignment is MCL's, draw for draw.
    assignment = topk_assignment(nll.detach(), k, generator=generator, eligible=eligible)
    mcl_part, assignment = mcl_terms(nll, k, generator, weights, assignment)
    target = assignment.to(score_logits.dtype)
    bce = F.binary_cross_entropy_with_logits(score_logits, target, reduction="none")  # (M, B)
    bce = torch.where(off, torch.where(assignment, torch.inf, 0.0).to(bce.dtype), bce)
    return mcl_part + score_weight * bce.mean(dim=1) / bce.shape[0], assignment
