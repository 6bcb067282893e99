"""The paper's cross-entropy losses (section 6) and confident MCL, as pure losses on member logits `(M, B, C)`
and integer targets `(B,)`: `independent_ce`, the averaged losses `score_averaged_ce` and `prob_averaged_ce`
(one prediction of the combined members; they take no per-member weights), the MCL assignment and `mcl_loss`,
`mcl_ce_loss` and `confident_mcl_loss`. Selectable by name through `mheads.ensemble.losses.LOSSES`; the
per-member terms they share with the other tasks' losses live in `mheads.ensemble.loss_terms`, the modern
winner-takes-all family in `mheads.ensemble.wta`."""

from __future__ import annotations

import torch

from mheads.ensemble.combine import (
    ensemble_log_probs,
    ensemble_nll,
    ensemble_scores,
    member_log_probs,
    member_nll,
)
from mheads.ensemble.loss_terms import (
    assign,
    check_beta,
    check_inputs,
    check_k,
    check_label_smoothing,
    check_mix,
    check_weights,
    confident_mcl_terms,
    independent_terms,
    mcl_terms,
    smoothed_member_nll,
    smoothed_nll,
)

__all__ = [
    "independent_ce",
    "score_averaged_ce",
    "prob_averaged_ce",
    "mcl_assignment",
    "mcl_loss",
    "mcl_ce_loss",
    "confident_mcl_loss",
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
            member_log_probs(ensemble_scores(logits).unsqueeze(0)), targets, label_smoothing
        ).mean()
    return member_nll(ensemble_scores(logits).unsqueeze(0), targets).mean()


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


def _no_weights(average, weights) -> None:
    if weights is not None:
        raise ValueError(
            f"weights: loss {average.__name__!r} averages the members and takes no per-member "
            "weights; got some (expected None)"
        )
