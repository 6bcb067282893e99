"""One entry point for "uncertainty you can trust": calibration, selective prediction, MCL set metrics and
OOD detection of an ensemble, from member logits `(M, N, C)` (and optionally OOD logits `(M, K, C)`).

The ensemble's prediction is the argmax of the averaged probabilities (ties to the lowest class index) and its
confidence is their maximum, as in `mheads.ensemble.metrics`. Accuracy-style metrics live there.
(`mheads.report` presents results; this module computes them, hence the longer name.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict

import torch
from typing_extensions import NotRequired  # in typing from Python 3.11; torch requires typing_extensions

from mheads.core.checks import check_int
from mheads.ensemble.calibration import adaptive_ece, classwise_ece
from mheads.ensemble.combine import ensemble_probs
from mheads.ensemble.detection import CONVENTIONS, detection_metrics
from mheads.ensemble.metrics import NUM_ECE_BINS
from mheads.ensemble.selective import COVERAGES, aurc, eaurc, risk_at_coverage
from mheads.ensemble.sets import distinct_predictions, oracle_at_k, top1_set_coverage
from mheads.ensemble.uncertainty import (
    CRITERIA,
    check_member_logits,
    checked_float64_logits_targets,
    entropy_decomposition,
)

__all__ = ["UncertaintyArrays", "uncertainty_report", "uncertainty_arrays"]


class UncertaintyArrays(TypedDict):
    """What :func:`uncertainty_arrays` returns (a plain dict): ``ood_scores`` only with OOD logits."""

    confidence: torch.Tensor  # (N,) float64
    correct: torch.Tensor  # (N,) bool
    scores: dict[str, torch.Tensor]  # criterion -> (N,)
    ood_scores: NotRequired[dict[str, torch.Tensor]]  # criterion -> (K,)


def _check_ood(logits64: torch.Tensor, ood_logits: torch.Tensor | None) -> torch.Tensor | None:
    if ood_logits is None:
        return None
    ood64 = check_member_logits(ood_logits, "ood_logits")
    expected = (logits64.shape[0], logits64.shape[2])
    if (ood64.shape[0], ood64.shape[2]) != expected:
        raise ValueError(
            f"ood_logits: got shape {tuple(ood64.shape)}; expected (M, K, C) with (M, C) = "
            f"{expected} like logits"
        )
    return ood64


def _mean(values: torch.Tensor) -> float:
    return math.fsum(values.tolist()) / values.shape[0]


def _entropies(logits64: torch.Tensor) -> dict[str, float]:
    total, aleatoric, epistemic = entropy_decomposition(logits64)
    return {"total": _mean(total), "aleatoric": _mean(aleatoric), "epistemic": _mean(epistemic)}


@torch.no_grad()
def uncertainty_arrays(
    logits: torch.Tensor, targets: torch.Tensor, ood_logits: torch.Tensor | None = None
) -> UncertaintyArrays:
    """Per-example arrays for figures (reliability diagram, risk-coverage curve, score histograms), CPU:
    `confidence: (N,)` float64 max averaged probability, `correct: (N,)` bool, `scores: {criterion: (N,)}`
    (higher = more OOD) and, with `ood_logits: (M, K, C)`, `ood_scores: {criterion: (K,)}`."""
    logits64, targets = checked_float64_logits_targets(logits, targets)
    ood64 = _check_ood(logits64, ood_logits)
    probs = ensemble_probs(logits64)
    arrays: UncertaintyArrays = {
        "confidence": probs.amax(dim=-1).clamp(max=1.0).cpu(),
        "correct": (probs.argmax(dim=-1) == targets).cpu(),
        "scores": {name: score(logits64).cpu() for name, score in CRITERIA.items()},
    }
    if ood64 is not None:
        arrays["ood_scores"] = {name: score(ood64).cpu() for name, score in CRITERIA.items()}
    return arrays


@torch.no_grad()
def uncertainty_report(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ood_logits: torch.Tensor | None = None,
    *,
    num_bins: int = NUM_ECE_BINS,
    coverages: Sequence[float] = COVERAGES,
) -> dict[str, object]:
    """A JSON-ready dict of plain floats (string keys):

    `num_examples`; `entropy` {total, aleatoric, epistemic} means on in-distribution data; `adaptive_ece`
    (equal-mass) and `classwise_ece` with `num_bins` bins; `aurc`, `eaurc` (excess AURC) and
    `risk_at_coverage` {str(c): risk} with the max averaged probability as confidence; `top1_set_coverage`,
    `oracle_at_k` {str(k): value} for k = 1..M and `distinct_predictions`. With `ood_logits: (M, K, C)` also
    `num_ood_examples`, `ood_entropy` (the same means on OOD data), `ood` {criterion: {auroc, aupr_in,
    aupr_in_chance, aupr_out, aupr_out_chance, fpr95_in, fpr95_out}} and `ood_conventions` (which class is
    positive in each, in words: `mheads.ensemble.detection.CONVENTIONS`).
    """
    check_int("num_bins", num_bins, 1)
    logits64, targets = checked_float64_logits_targets(logits, targets)
    ood64 = _check_ood(logits64, ood_logits)
    arrays = uncertainty_arrays(logits64, targets, ood64)
    confidence, correct = arrays["confidence"], arrays["correct"]
    risks = risk_at_coverage(confidence, correct, coverages)
    report: dict[str, object] = {
        "num_examples": targets.shape[0],
        "entropy": _entropies(logits64),
        "adaptive_ece": adaptive_ece(confidence, correct, num_bins),
        "classwise_ece": classwise_ece(ensemble_probs(logits64), targets, num_bins),
        "aurc": aurc(confidence, correct),
        "eaurc": eaurc(confidence, correct),
        "risk_at_coverage": {str(float(c)): r for c, r in risks.items()},
        "top1_set_coverage": top1_set_coverage(logits64, targets),
        "oracle_at_k": {str(k): oracle_at_k(logits64, targets, k) for k in range(1, logits64.shape[0] + 1)},
        "distinct_predictions": distinct_predictions(logits64),
    }
    if ood64 is not None:
        report["num_ood_examples"] = ood64.shape[1]
        report["ood_entropy"] = _entropies(ood64)
        report["ood"] = {
            name: detection_metrics(arrays["scores"][name], arrays["ood_scores"][name]) for name in CRITERIA
        }
        report["ood_conventions"] = dict(CONVENTIONS)
    return report
