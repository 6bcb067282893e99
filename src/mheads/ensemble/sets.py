"""Set-valued metrics for MCL ensembles, whose members are specialists: the set of member predictions.

`logits: (M, B, C)`, `targets: (B,)`. A member's prediction is its top-1 class (ties to the lowest class
index, torch.argmax) and its confidence is its largest softmax probability.
"""

from __future__ import annotations

import torch

from mheads.core.checks import check_int
from mheads.ensemble.uncertainty import check_member_logits, checked_float64_logits_targets

__all__ = ["top1_set_coverage", "oracle_at_k", "distinct_predictions"]


@torch.no_grad()
def top1_set_coverage(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of examples whose target is in the set `{argmax_c z_mc : m = 1..M}` of member predictions.
    By definition this is `mheads.ensemble.metrics.oracle_accuracy` seen as a set-valued prediction."""
    logits64, targets = checked_float64_logits_targets(logits, targets)
    return int((logits64.argmax(dim=-1) == targets).any(dim=0).sum()) / targets.shape[0]


@torch.no_grad()
def oracle_at_k(logits: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    """Fraction of examples on which one of the k most confident members (per example, by their largest
    probability; equal confidences rank the lower member index first) predicts the target.

    k = 1 is the accuracy of "trust the most confident member"; k = M is the oracle accuracy."""
    logits64, targets = checked_float64_logits_targets(logits, targets)
    check_int("k", k, 1, logits64.shape[0])
    probs = torch.softmax(logits64, dim=-1)
    hits = probs.argmax(dim=-1) == targets  # (M, B)
    ranked = torch.sort(probs.amax(dim=-1), dim=0, descending=True, stable=True).indices  # (M, B)
    return int(hits.gather(0, ranked[:k]).any(dim=0).sum()) / targets.shape[0]


@torch.no_grad()
def distinct_predictions(logits: torch.Tensor) -> float:
    """Mean over examples of the number of distinct top-1 classes among the members, in [1, min(M, C)]."""
    predictions = torch.sort(check_member_logits(logits).argmax(dim=-1), dim=0).values  # (M, B)
    distinct = 1 + (predictions[1:] != predictions[:-1]).sum(dim=0)
    return int(distinct.sum()) / predictions.shape[1]
