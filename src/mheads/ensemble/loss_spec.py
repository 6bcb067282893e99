"""What a registered loss is: `LossSpec` (its per-member ``terms``, or the loss of the combined prediction it
averages, and what it needs), the `LossParams` a loss's ``terms`` read, the `LossResult` that `compute_loss`
and `ensemble_loss` return, and the ``terms`` of the built-in ensemble losses on per-example member losses
`(M, B)`. The registries that name them (`ENSEMBLE_LOSSES`, `LOSSES`) are in `mheads.ensemble.losses`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mheads.ensemble.ce_losses import _mix_terms
from mheads.ensemble.loss_terms import (
    annealed_mcl_terms,
    confident_terms,
    independent_terms,
    mcl_terms,
    relaxed_mcl_terms,
    scored_mcl_terms,
)

__all__ = ["LossParams", "LossResult", "LossSpec"]


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
