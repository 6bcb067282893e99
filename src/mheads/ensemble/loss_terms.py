"""Building blocks of the losses in `mheads.ensemble.losses`: argument checks and per-member loss terms.

Each `*_terms` function returns the members' contributions `(M,)` (their sum is the loss) and, for the MCL
family, the assignment `(M, B)` bool.
"""

from __future__ import annotations

import math

import torch

from mheads.core.checks import check_int, check_number
from mheads.ensemble.assignment import topk_assignment
from mheads.ensemble.combine import check_logits_targets

__all__ = ["check_k", "check_mix", "check_beta", "check_inputs", "check_weights"]


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
