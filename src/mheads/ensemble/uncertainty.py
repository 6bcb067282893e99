"""Per-example uncertainty from member logits `(M, B, C)`: the entropy decomposition and OOD scores.

Everything is computed in float64 without gradients. With `p_m = softmax(z_m)` and `p̄ = mean_m p_m`:

    total     H[p̄]                      (predictive entropy)
    aleatoric mean_m H[p_m]             (expected member entropy)
    epistemic total - aleatoric         (mutual information I[y; m], clamped at 0)

in nats, `H[p] = -sum_c p_c log p_c` with `0 log 0 = 0`. The mutual information equals
`mean_m KL(p_m || p̄) >= 0`; rounding can make the difference a hair negative, hence the clamp.

OOD criteria are scores `(B,)` where higher means more likely out of distribution; `CRITERIA` maps each name
to its function so callers can loop over them. Argmaxes break ties to the lowest class index (torch.argmax).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mheads.ensemble.combine import ensemble_log_probs, mean_scores
from mheads.ensemble.metrics import disagreeing_pairs, non_finite

__all__ = [
    "CRITERIA",
    "check_member_logits",
    "check_targets",
    "checked_float64_logits_targets",
    "entropy_decomposition",
    "max_prob_score",
    "entropy_score",
    "mutual_info_score",
    "energy_score",
    "disagreement_score",
    "max_member_prob_score",
]


# ---------------------------------------------------------------- argument checks


def check_member_logits(logits: torch.Tensor, field: str = "logits") -> torch.Tensor:
    """`logits: (M, B, C)` floats with M, B, C >= 1 -> a detached float64 copy. Finite, but for a -inf on some
    classes (a class mask: probability 0; `mheads.ensemble.metrics.non_finite` refuses the rest)."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{field}: got {type(logits).__name__}; expected a torch.Tensor of shape (M, B, C)")
    if logits.ndim != 3 or min(logits.shape) < 1:
        raise ValueError(f"{field}: got shape {tuple(logits.shape)}; expected (M, B, C) with M, B, C >= 1")
    if not logits.is_floating_point():
        raise ValueError(f"{field}: got dtype {logits.dtype}; expected a floating-point tensor")
    logits64 = logits.detach().to(torch.float64)
    if bool(non_finite(logits64).any()):
        raise ValueError(
            f"{field}: got non-finite values (NaN, +inf, or -inf on every class); expected finite logits, "
            "or -inf on some classes (a class mask)"
        )
    return logits64


def check_targets(targets: torch.Tensor, batch: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """`targets: (B,)` integer classes in `[0, C)` on `device` -> int64 targets."""
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets: got {type(targets).__name__}; expected a torch.Tensor of shape (B,)")
    if targets.ndim != 1 or targets.shape[0] != batch:
        raise ValueError(f"targets: got shape {tuple(targets.shape)}; expected (B,) = ({batch},)")
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise ValueError(f"targets: got dtype {targets.dtype}; expected an integer tensor of class indices")
    if targets.device != device:
        raise ValueError(f"targets: got device {targets.device}; expected {device}")
    low, high = int(targets.min()), int(targets.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"targets: got values in [{low}, {high}]; expected values in [0, {num_classes})")
    return targets.long()


def checked_float64_logits_targets(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`logits: (M, B, C)`, `targets: (B,)` integer classes in `[0, C)` -> float64 logits, int64 targets.

    Checks and converts (every metric here computes in float64); raises ValueError/TypeError naming the bad
    argument. The losses' check, which converts nothing and may skip reading the targets' values on an
    accelerator, is :func:`mheads.ensemble.combine.check_logits_targets`.
    """
    logits64 = check_member_logits(logits)
    _, batch, num_classes = logits64.shape
    return logits64, check_targets(targets, batch, num_classes, logits.device)


# ---------------------------------------------------------------- entropy decomposition


def _entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """`(..., C)` log-probabilities -> `(...)` entropy in nats, `0 log 0 = 0`."""
    probs = log_probs.exp()
    return -torch.where(probs > 0, probs * log_probs, 0.0).sum(dim=-1)


@torch.no_grad()
def entropy_decomposition(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`logits: (M, B, C)` -> `(total, aleatoric, epistemic)`, each `(B,)` float64 (formulas above).

    `total = H[mean_m p_m]`, `aleatoric = mean_m H[p_m]`, `epistemic = max(total - aleatoric, 0)`.
    """
    logits64 = check_member_logits(logits)
    total = _entropy(ensemble_log_probs(logits64))
    aleatoric = _entropy(torch.log_softmax(logits64, dim=-1)).mean(dim=0)
    return total, aleatoric, (total - aleatoric).clamp(min=0.0)


# ---------------------------------------------------------------- OOD criteria (higher = more OOD)


@torch.no_grad()
def max_prob_score(logits: torch.Tensor) -> torch.Tensor:
    """`-max_c p̄_c`: the negated confidence of the probability-averaged ensemble, `(B,)`."""
    return -ensemble_log_probs(check_member_logits(logits)).exp().amax(dim=-1)


def entropy_score(logits: torch.Tensor) -> torch.Tensor:
    """Total predictive entropy `H[p̄]`, `(B,)`."""
    return entropy_decomposition(logits)[0]


def mutual_info_score(logits: torch.Tensor) -> torch.Tensor:
    """Mutual information (epistemic part) `H[p̄] - mean_m H[p_m]`, `(B,)`."""
    return entropy_decomposition(logits)[2]


@torch.no_grad()
def energy_score(logits: torch.Tensor) -> torch.Tensor:
    """Energy of the score-averaged logits, `E = -T logsumexp(z̄ / T)` with `T = 1` and `z̄ = mean_m z_m`
    (Liu et al. 2020), `(B,)`. In-distribution inputs get large logits, hence low energy: higher = OOD."""
    return -torch.logsumexp(mean_scores(check_member_logits(logits)), dim=-1)


@torch.no_grad()
def disagreement_score(logits: torch.Tensor) -> torch.Tensor:
    """Fraction of the `M (M - 1) / 2` member pairs whose top-1 predictions differ, `(B,)`; 0 when M = 1."""
    logits64 = check_member_logits(logits)
    num_members = logits64.shape[0]
    pairs = disagreeing_pairs(logits64.argmax(dim=-1)).to(torch.float64)
    return pairs / max(num_members * (num_members - 1) // 2, 1)


@torch.no_grad()
def max_member_prob_score(logits: torch.Tensor) -> torch.Tensor:
    """`-max_m max_c p_mc`: the negated confidence of the most confident member, `(B,)`. The oracle-aware
    criterion for MCL ensembles, where on an in-distribution input at least one specialist is confident
    while the others may be uniform by design."""
    probs = torch.softmax(check_member_logits(logits), dim=-1)
    return -probs.amax(dim=-1).amax(dim=0)


CRITERIA: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "max_prob": max_prob_score,
    "entropy": entropy_score,
    "mutual_info": mutual_info_score,
    "energy": energy_score,
    "disagreement": disagreement_score,
    "max_member_prob": max_member_prob_score,
}
