"""Selective prediction: keep the most confident examples, measure the error rate among those kept.

Inputs are `confidence: (N,)` (higher = keep) and `correct: (N,)` bool. Examples are sorted by confidence,
highest first, and examples with equal confidence enter together (a threshold cannot separate them), so the
risk-coverage curve has one point per distinct confidence: after the g-th group, coverage `n_g / N` and
selective risk `e_g / n_g`, with `n_g` examples kept of which `e_g` are wrong.

AURC (Geifman et al. 2019) is the mean of the selective risks at the coverages `k / N`, k = 1..N:
`AURC = (1/N) sum_k risk(k)`. With ties, the k that fall inside a tie group all get that group's risk
(the group enters together), so `AURC = (1/N) sum_g s_g e_g / n_g` with `s_g` the size of group g.
Without ties this is exactly Geifman's `(1/N) sum_k (errors among the top k) / k`.

E-AURC (excess AURC, Geifman et al. 2019, Sec. 3) is AURC minus the AURC of the oracle ranking, which keeps
every correct example before every error: with E errors, `AURC* = (1/N) sum_{k=N-E+1}^{N} (k - N + E) / k`
(exact for finite N; Geifman's `r + (1 - r) ln(1 - r)` with `r = E / N` is its large-N limit). It is 0 for a
perfect ranking whatever the error rate, so it compares confidence rankings across models of unequal accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mheads.core.checks import check_number

__all__ = [
    "COVERAGES",
    "check_confidence_correct",
    "risk_coverage_curve",
    "aurc",
    "oracle_aurc",
    "eaurc",
    "risk_at_coverage",
]

COVERAGES = (0.5, 0.8, 0.9, 0.95, 1.0)


def check_confidence_correct(
    confidence: torch.Tensor, correct: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`confidence: (N,)` real without NaN, `correct: (N,)` bool, N >= 1 -> float64 and bool CPU copies."""
    for field, value in (("confidence", confidence), ("correct", correct)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{field}: got {type(value).__name__}; expected a torch.Tensor of shape (N,)")
    if confidence.ndim != 1 or confidence.shape[0] < 1:
        raise ValueError(f"confidence: got shape {tuple(confidence.shape)}; expected (N,) with N >= 1")
    if confidence.dtype.is_complex or confidence.dtype == torch.bool:
        raise ValueError(f"confidence: got dtype {confidence.dtype}; expected a real-valued tensor")
    if correct.shape != confidence.shape:
        raise ValueError(f"correct: got shape {tuple(correct.shape)}; expected {tuple(confidence.shape)}")
    if correct.dtype != torch.bool:
        raise ValueError(f"correct: got dtype {correct.dtype}; expected torch.bool")
    confidence64 = confidence.detach().to("cpu", torch.float64)
    if bool(confidence64.isnan().any()):
        raise ValueError("confidence: got NaN values; expected comparable confidences")
    return confidence64, correct.detach().cpu()


def _groups(confidence: torch.Tensor, correct: torch.Tensor) -> tuple[list[int], list[int]]:
    """Kept counts `n_g` and error counts `e_g` after each tie group, highest confidence first."""
    confidence, correct = check_confidence_correct(confidence, correct)
    order = torch.sort(confidence, descending=True, stable=True).indices
    _, sizes = torch.unique_consecutive(confidence[order], return_counts=True)
    ends = sizes.cumsum(0) - 1
    errors = (~correct[order]).to(torch.int64).cumsum(0)[ends]
    return (ends + 1).tolist(), errors.tolist()


def risk_coverage_curve(confidence: torch.Tensor, correct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(coverage, risk)`, each `(G,)` float64 over the G distinct confidences, highest first: coverage
    `n_g / N` and selective risk `e_g / n_g`. The last point is coverage 1 with the overall error rate."""
    kept, errors = _groups(confidence, correct)
    total = kept[-1]
    coverage = torch.tensor([n / total for n in kept], dtype=torch.float64)
    risk = torch.tensor([e / n for e, n in zip(errors, kept)], dtype=torch.float64)
    return coverage, risk


def aurc(confidence: torch.Tensor, correct: torch.Tensor) -> float:
    """Area under the risk-coverage curve, `(1/N) sum_g s_g e_g / n_g` (see the module docstring)."""
    kept, errors = _groups(confidence, correct)
    sizes = [n - before for n, before in zip(kept, [0, *kept[:-1]])]
    return math.fsum(s * e / n for s, e, n in zip(sizes, errors, kept)) / kept[-1]


def oracle_aurc(correct: torch.Tensor) -> float:
    """AURC of the oracle ranking (every correct example first), `(1/N) sum_{k>N-E} (k - N + E) / k`."""
    if not isinstance(correct, torch.Tensor) or correct.ndim != 1 or correct.shape[0] < 1:
        got = tuple(correct.shape) if isinstance(correct, torch.Tensor) else type(correct).__name__
        raise ValueError(f"correct: got {got}; expected a bool tensor of shape (N,) with N >= 1")
    if correct.dtype != torch.bool:
        raise ValueError(f"correct: got dtype {correct.dtype}; expected torch.bool")
    n, e = correct.shape[0], int((~correct).sum())
    return math.fsum((k - n + e) / k for k in range(n - e + 1, n + 1)) / n


def eaurc(confidence: torch.Tensor, correct: torch.Tensor) -> float:
    """Excess AURC, `aurc - oracle_aurc` (>= 0; 0 for a ranking with every error below every correct one)."""
    return aurc(confidence, correct) - oracle_aurc(correct)


def risk_at_coverage(
    confidence: torch.Tensor, correct: torch.Tensor, coverages: Sequence[float] = COVERAGES
) -> dict[float, float]:
    """`{c: risk}` for each coverage c in (0, 1]: the selective risk `e_g / n_g` of the first tie group
    whose coverage `n_g / N` is >= c (the highest threshold that keeps at least a fraction c)."""
    for i, c in enumerate(coverages):
        check_number(f"coverages[{i}]", c, 0.0, 1.0, strict_low=True)
    kept, errors = _groups(confidence, correct)
    total = kept[-1]
    result = {}
    for c in coverages:
        # n / total is correctly rounded, so e.g. 19/20 >= 0.95 holds exactly as written.
        g = next(g for g, n in enumerate(kept) if n / total >= c)
        result[c] = errors[g] / kept[g]
    return result
