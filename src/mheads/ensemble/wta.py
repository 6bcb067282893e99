"""The modern winner-takes-all family, MCL's descendants, as pure losses on member logits `(M, B, C)`
and targets `(B,)`: relaxed winner-takes-all (2017), annealed MCL and its temperature schedule (2024), and MCL
with scoring heads (2023). Selectable by name through `mheads.ensemble.losses.LOSSES` (`rwta`, `amcl`,
`mcl_scored`); the per-member terms they share with MCL live in `mheads.ensemble.loss_terms`."""

from __future__ import annotations

import torch

from mheads.core.checks import check_int, check_number
from mheads.ensemble.loss_terms import (
    annealed_mcl_terms,
    check_epsilon,
    check_inputs,
    check_k,
    check_label_smoothing,
    check_score_logits,
    check_score_weight,
    check_temperature,
    check_weights,
    relaxed_mcl_terms,
    scored_mcl_terms,
    smoothed_member_nll,
)

__all__ = ["ANNEAL_FLOOR", "annealed_mcl_loss", "annealed_temperature", "relaxed_mcl_loss", "scored_mcl_loss"]


def relaxed_mcl_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    k: int = 1,
    epsilon: float = 0.05,
    generator: torch.Generator | None = None,
    *,
    weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Relaxed winner-takes-all (Rupprecht et al., "Learning in an Uncertain World: Representing Ambiguity
    Through Multiple Hypotheses", ICCV 2017): the non-winners keep a small share of every
    example, so that no member is starved of gradient.

    `(1/B) sum_i sum_m w_mi r_mi CE_m(i)` with `r_mi = 1 - epsilon` for the k members MCL assigns (its
    assignment and random tie-breaking, `mcl_assignment`) and `r_mi = k epsilon / (M - k)` for the other
    `M - k`: an example's weights sum to k, as in MCL. With k = 1 this is the paper's form: the winner
    `1 - epsilon`, each of the others `epsilon / (M - 1)`. `epsilon = 0` is `mcl_loss` exactly, and k = M
    (nothing to relax) is `independent_ce`. `logits: (M, B, C)`, `targets: (B,)` -> scalar.
    """
    check_inputs(logits, targets)
    check_k(k, logits.shape[0])
    check_epsilon(epsilon)
    check_weights(weights, logits)
    check_label_smoothing(label_smoothing)
    nll = smoothed_member_nll(logits, targets, label_smoothing)
    return relaxed_mcl_terms(nll, k, epsilon, generator, weights)[0].sum()


def annealed_mcl_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    *,
    weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Annealed MCL (Perera, Letzelter et al., "Annealed Multiple Choice Learning: Overcoming limitations of
    Winner-takes-all with annealing", NeurIPS 2024): a soft, deterministic-annealing assignment.

    `(1/B) sum_i sum_m w_mi q_mi CE_m(i)` with `q_mi = softmax_m(-CE_m(i) / T)` (detached; members with
    bagging weight 0 excluded). A large T weighs the members uniformly (`independent_ce / M`); `T = 0` is
    `mcl_loss` with k = 1 exactly. Training lowers T with `annealed_temperature`. `logits: (M, B, C)`,
    `targets: (B,)` -> scalar.
    """
    check_inputs(logits, targets)
    check_temperature(temperature)
    check_weights(weights, logits)
    check_label_smoothing(label_smoothing)
    nll = smoothed_member_nll(logits, targets, label_smoothing)
    return annealed_mcl_terms(nll, temperature, generator, weights)[0].sum()


# Annealed MCL's temperature falls exponentially to this fraction of T0 at anneal_iterations, then is 0.
ANNEAL_FLOOR = 1e-3


def annealed_temperature(temperature: float, anneal_iterations: int, iteration: int) -> float:
    """The temperature of annealed MCL at training iteration `iteration` (0-based, counted from the start of
    the run, `loss.pretrain_iterations` included): `T0 * rho^t` as in Perera,
    Letzelter et al. (NeurIPS 2024), with rho chosen so that T reaches `ANNEAL_FLOOR * T0` at
    `anneal_iterations`, i.e. `T0 * ANNEAL_FLOOR ** (t / anneal_iterations)`, and exactly 0 (plain MCL) from
    iteration `anneal_iterations` on. `temperature` = T0 > 0 (`loss.temperature`), `anneal_iterations` >= 0
    (`loss.anneal_iterations`; 0: MCL from the start)."""
    check_number("temperature", temperature, 0.0, strict_low=True)
    check_int("anneal_iterations", anneal_iterations, 0)
    check_int("iteration", iteration, 0)
    if iteration >= anneal_iterations:
        return 0.0
    return float(temperature * ANNEAL_FLOOR ** (iteration / anneal_iterations))


def scored_mcl_loss(
    logits: torch.Tensor,
    score_logits: torch.Tensor,
    targets: torch.Tensor,
    k: int = 1,
    score_weight: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """MCL with scoring heads, after resilient MCL (Letzelter et al., "Resilient Multiple Choice Learning: A
    learned scoring scheme with application to audio scene analysis", NeurIPS 2023): each member
    also predicts, per input, the probability that it is assigned the input.

    `mcl_loss + score_weight * mean_{m,i} BCE(score_logits_mi, alpha_mi)`, where alpha is the MCL assignment
    (k, tie-breaking and bagging eligibility as in `mcl_loss`; a target, never differentiated) and
    `score_logits: (M, B)` the scoring heads' logits (`TreeNet.forward_with_scores`). Bagging weights weigh
    the MCL part only. `logits: (M, B, C)`, `targets: (B,)` -> scalar.
    """
    check_inputs(logits, targets)
    check_k(k, logits.shape[0])
    check_score_logits(score_logits, logits)
    check_score_weight(score_weight)
    check_weights(weights, logits)
    check_label_smoothing(label_smoothing)
    nll = smoothed_member_nll(logits, targets, label_smoothing)
    return scored_mcl_terms(nll, score_logits, k, score_weight, generator, weights)[0].sum()
