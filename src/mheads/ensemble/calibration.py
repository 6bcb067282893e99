"""Calibration: adaptive (equal-mass) and class-wise ECE, reliability-diagram bins, temperature scaling.

Binned calibration errors are `(1/N) sum_b |sum_{i in b} (y_i - p_i)|`, i.e. `sum_b (n_b / N) |acc_b -
conf_b|`, in float64 (y_i is 1 for a correct prediction, or for the class at hand). Equal-width bins are
`(j/K, (j+1)/K]` with 0 in the first bin (the rule of `mheads.ensemble.metrics.expected_calibration_error`).

Equal-mass bins (`adaptive_ece`): sort the confidences ascending and cut the sorted list into `num_bins`
consecutive groups with `numpy.array_split`'s sizes (with `N = q num_bins + r`, the first r, least
confident, groups have q + 1 examples and the rest q); group b's last confidence is the edge `e_b`, and an
example goes to the first bin whose edge is >= its confidence. Without ties that is exactly the array_split
groups. Equal confidences always share a bin (a threshold cannot separate them, as in `selective` and
`detection`): a tie group straddling a cut goes whole to the lower bin, which grows while the next ones
shrink or empty. So the result depends only on the (confidence, correct) pairs, never on input order or on
the correct/incorrect mix inside a tie group (splitting one by correctness would invent a calibration gap:
0.5 for a 50%-accurate tie at confidence 0.5, whose ECE is 0). Empty bins contribute nothing.

Temperature scaling (Guo et al. 2017) divides member logits by T > 0. `fit_temperature` minimises the mean
NLL over `u = log T` in `[-5, 5]` deterministically: a grid of 21 points (step 0.5) finds the best basin
globally, then 45 golden-section steps on the two grid cells around the best point shrink it to ~1e-9.
A member's own NLL is convex in 1/T, hence unimodal in log T, so the section converges to its minimiser
(to the accuracy float64 NLL values allow, ~1e-8 in log T); the probability-averaged ensemble NLL need not
be, and the grid keeps the search from settling in a worse basin than the best grid point. A minimum
beyond the range returns the boundary (T = e^±5).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mheads.core.checks import check_int, check_number
from mheads.ensemble.combine import ensemble_nll, member_nll
from mheads.ensemble.metrics import NUM_ECE_BINS
from mheads.ensemble.selective import check_confidence_correct
from mheads.ensemble.uncertainty import check_targets, checked_float64_logits_targets

__all__ = [
    "LOG_T_RANGE",
    "adaptive_ece",
    "classwise_ece",
    "reliability_bins",
    "fit_temperature",
    "apply_temperature",
]

LOG_T_RANGE = (-5.0, 5.0)
GRID_POINTS = 21
GOLDEN_STEPS = 45
INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0


# ---------------------------------------------------------------- binned calibration errors


def _check_unit(field: str, values: torch.Tensor) -> None:
    if not bool(((values >= 0) & (values <= 1)).all()):
        low, high = float(values.min()), float(values.max())
        raise ValueError(f"{field}: got values in [{low}, {high}]; expected probabilities in [0, 1]")


def _equal_width_bins(values: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Bin j is `(j/num_bins, (j+1)/num_bins]`, 0 going to bin 0; same shape as `values`, int64."""
    edges = torch.linspace(0.0, 1.0, num_bins + 1, dtype=torch.float64)[1:-1]
    return torch.bucketize(values, edges, right=False)


def _equal_mass_bins(confidence: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Bin index `(N,)` int64 of each example under the equal-mass rule of the module docstring."""
    q, r = divmod(confidence.shape[0], num_bins)
    sizes = torch.tensor([q + 1] * r + [q] * (num_bins - r), dtype=torch.int64)
    ends = sizes.cumsum(0) - 1  # last sorted position of each group; an empty group repeats the one before
    edges = torch.sort(confidence).values[ends.clamp(min=0)]
    edges[sizes == 0] = float("inf")  # empty groups (N < num_bins) come last and must take no example
    return torch.searchsorted(edges, confidence, right=False)


def _checked_binary(confidence: torch.Tensor, correct: torch.Tensor, num_bins: int):
    check_int("num_bins", num_bins, 1)
    confidence, correct = check_confidence_correct(confidence, correct)
    _check_unit("confidence", confidence)
    return confidence, correct


def _binned_error(values: torch.Tensor, hits: torch.Tensor, bins: torch.Tensor, num_bins: int) -> float:
    """`(1/N) sum_b |sum_{i in b} (hit_i - value_i)|` for `values, hits, bins: (N,)`."""
    gaps = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, bins, hits.to(torch.float64) - values)
    return gaps.abs().sum().item() / values.shape[0]


def adaptive_ece(confidence: torch.Tensor, correct: torch.Tensor, num_bins: int = NUM_ECE_BINS) -> float:
    """ECE with `num_bins` equal-mass bins. `confidence: (N,)` in [0, 1], `correct: (N,)` bool."""
    confidence, correct = _checked_binary(confidence, correct, num_bins)
    return _binned_error(confidence, correct, _equal_mass_bins(confidence, num_bins), num_bins)


def classwise_ece(probs: torch.Tensor, targets: torch.Tensor, num_bins: int = NUM_ECE_BINS) -> float:
    """Class-wise ECE (Kull et al. 2019): the mean over classes c of the equal-width-bin ECE of `p_c`
    against `1[y = c]`. `probs: (B, C)` in [0, 1], `targets: (B,)` integer classes."""
    check_int("num_bins", num_bins, 1)
    if not isinstance(probs, torch.Tensor):
        raise TypeError(f"probs: got {type(probs).__name__}; expected a torch.Tensor of shape (B, C)")
    if probs.ndim != 2 or min(probs.shape) < 1:
        raise ValueError(f"probs: got shape {tuple(probs.shape)}; expected (B, C) with B, C >= 1")
    if not probs.is_floating_point():
        raise ValueError(f"probs: got dtype {probs.dtype}; expected a floating-point tensor")
    batch, num_classes = probs.shape
    targets = check_targets(targets, batch, num_classes, probs.device).cpu()
    probs64 = probs.detach().to("cpu", torch.float64)
    _check_unit("probs", probs64)
    labels = torch.nn.functional.one_hot(targets, num_classes).to(torch.float64)
    # Class c's bins are c * num_bins + j, so one index_add gives every class's per-bin gaps.
    bins = _equal_width_bins(probs64, num_bins) + torch.arange(num_classes) * num_bins
    gaps = torch.zeros(num_classes * num_bins, dtype=torch.float64)
    gaps.index_add_(0, bins.flatten(), (labels - probs64).flatten())
    return gaps.abs().sum().item() / (batch * num_classes)


def reliability_bins(
    confidence: torch.Tensor, correct: torch.Tensor, num_bins: int = NUM_ECE_BINS, *, adaptive: bool = True
) -> dict[str, torch.Tensor]:
    """Reliability-diagram data for equal-mass (`adaptive`) or equal-width bins: `count`, `confidence`
    (mean) and `accuracy`, each `(K,)` over the K non-empty bins in ascending confidence."""
    confidence, correct = _checked_binary(confidence, correct, num_bins)
    if adaptive:
        bins = _equal_mass_bins(confidence, num_bins)
    else:
        bins = _equal_width_bins(confidence, num_bins)
    count = torch.bincount(bins, minlength=num_bins)
    conf_sum = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, bins, confidence)
    hits = torch.bincount(bins, weights=correct.to(torch.float64), minlength=num_bins)
    kept = count > 0
    count = count[kept]
    return {"count": count, "confidence": conf_sum[kept] / count, "accuracy": hits[kept] / count}


# ---------------------------------------------------------------- temperature scaling


def _minimise_log_temperature(objective: Callable[[torch.Tensor], torch.Tensor], k: int) -> torch.Tensor:
    """k independent 1-D problems: `objective(u: (k,)) -> (k,)`; returns the minimising `u: (k,)`."""
    low, high = LOG_T_RANGE
    grid = torch.linspace(low, high, GRID_POINTS, dtype=torch.float64)
    values = torch.stack([objective(torch.full((k,), float(g), dtype=torch.float64)) for g in grid])
    best = values.argmin(dim=0)  # (k,), the first minimum
    best_u, best_value = grid[best], values.gather(0, best.unsqueeze(0)).squeeze(0)
    a, b = grid[(best - 1).clamp(min=0)], grid[(best + 1).clamp(max=GRID_POINTS - 1)]
    c, d = b - INV_PHI * (b - a), a + INV_PHI * (b - a)
    fc, fd = objective(c), objective(d)
    for _ in range(GOLDEN_STEPS):
        left = fc <= fd  # the minimum lies in [a, d]
        a, b = torch.where(left, a, c), torch.where(left, d, b)
        x = torch.where(left, b - INV_PHI * (b - a), a + INV_PHI * (b - a))
        fx = objective(x)
        c, d, fc, fd = (
            torch.where(left, x, d),
            torch.where(left, c, x),
            torch.where(left, fx, fd),
            torch.where(left, fc, fx),
        )
    u, fu = torch.where(fc <= fd, c, d), torch.minimum(fc, fd)
    return torch.where(fu <= best_value, u, best_u)


@torch.no_grad()
def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, per_member: bool = False) -> torch.Tensor:
    """Temperature minimising the mean NLL on `logits: (M, N, C)`, `targets: (N,)`, float64.

    `per_member=False`: one T for the probability-averaged ensemble `mean_m softmax(z_m / T)`, a 0-d tensor.
    `per_member=True`: each member's T_m minimising its own NLL of `softmax(z_m / T_m)`, `(M,)`.
    """
    if not isinstance(per_member, bool):
        raise TypeError(f"per_member: got {per_member!r}; expected a bool")
    logits64, targets = checked_float64_logits_targets(logits, targets)
    if per_member:

        def objective(u: torch.Tensor) -> torch.Tensor:
            return member_nll(logits64 / u.exp().view(-1, 1, 1), targets).mean(dim=1)

        return _minimise_log_temperature(objective, logits64.shape[0]).exp()

    def ensemble_objective(u: torch.Tensor) -> torch.Tensor:
        return ensemble_nll(logits64 / u.exp(), targets).mean().view(1)

    return _minimise_log_temperature(ensemble_objective, 1).exp()[0]


def apply_temperature(logits: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """`logits: (M, B, C)` divided by a positive T: a number, a 0-d tensor, or `(M,)` (one per member).
    The result keeps the logits' dtype; T = 1 returns exactly the same values."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3 or not logits.is_floating_point():
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits: got {shape}; expected a floating-point tensor of shape (M, B, C)")
    if not isinstance(temperature, torch.Tensor):
        check_number("temperature", temperature, 0.0, strict_low=True)
        temperature = torch.tensor(float(temperature))
    if temperature.shape not in ((), (logits.shape[0],)):
        raise ValueError(
            f"temperature: got shape {tuple(temperature.shape)}; expected () or (M,) = ({logits.shape[0]},)"
        )
    checked = temperature.detach().to("cpu", torch.float64)
    if not bool((torch.isfinite(checked) & (checked > 0)).all()):
        raise ValueError(f"temperature: got {checked.tolist()}; expected finite values > 0")
    temperature = temperature.detach().to(logits.device, logits.dtype)
    return logits / temperature.view(-1, 1, 1) if temperature.ndim else logits / temperature
