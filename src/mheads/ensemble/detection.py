"""Out-of-distribution detection metrics from scores where higher means more likely OOD.

Inputs are 1-D real tensors: `in_scores: (N_in,)` on in-distribution data and `out_scores: (N_out,)` on OOD
data; OOD is the positive class. Ties are handled exactly, with no tie-breaking by input order:

- `auroc` is the Mann-Whitney statistic `P(s_out > s_in) + 0.5 P(s_out = s_in)` over all (out, in) pairs,
  counted in integers (twice the statistic) and divided once.
- `aupr_out` / `aupr_in` are average precision over distinct thresholds (sklearn's
  `average_precision_score`): `AP = sum_t (R_t - R_{t-1}) P_t`, where examples with equal scores enter
  together at threshold t ("score >= t"). `aupr_in` takes in-distribution as positive and negates the scores.
- `fpr_at_tpr` flags "score >= t" as OOD and uses the highest distinct threshold t at which the fraction of
  OOD flagged (TPR) is >= `tpr`; it returns the fraction of in-distribution flagged there (FPR).
"""

from __future__ import annotations

import math

import torch

from mheads.core.checks import check_number

__all__ = ["check_scores", "auroc", "aupr_out", "aupr_in", "fpr_at_tpr", "detection_metrics"]


def check_scores(field: str, scores: torch.Tensor) -> torch.Tensor:
    """`scores: (N,)` real values (no NaN), N >= 1 -> a detached float64 CPU copy."""
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"{field}: got {type(scores).__name__}; expected a torch.Tensor of shape (N,)")
    if scores.ndim != 1 or scores.shape[0] < 1:
        raise ValueError(f"{field}: got shape {tuple(scores.shape)}; expected (N,) with N >= 1")
    if scores.dtype.is_complex or scores.dtype == torch.bool:
        raise ValueError(f"{field}: got dtype {scores.dtype}; expected a real-valued tensor")
    scores64 = scores.detach().to("cpu", torch.float64)
    if bool(scores64.isnan().any()):
        raise ValueError(f"{field}: got NaN values; expected comparable scores")
    return scores64


def _checked(in_scores: torch.Tensor, out_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return check_scores("in_scores", in_scores), check_scores("out_scores", out_scores)


def _cumulative_counts(positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """True and false positives `(T,)` int64 when "score >= t" is flagged, for each distinct score t in
    descending order; the last entries are the class sizes."""
    scores = torch.cat([positive, negative])
    labels = (torch.arange(scores.shape[0]) < positive.shape[0]).to(torch.int64)  # positives come first
    order = torch.sort(scores, descending=True, stable=True).indices
    _, group_sizes = torch.unique_consecutive(scores[order], return_counts=True)
    ends = group_sizes.cumsum(0) - 1  # last position of each tie group
    tp = labels[order].cumsum(0)[ends]
    return tp, ends + 1 - tp


def auroc(in_scores: torch.Tensor, out_scores: torch.Tensor) -> float:
    """Area under the ROC curve, OOD positive: `P(s_out > s_in) + 0.5 P(s_out = s_in)` (Mann-Whitney)."""
    in64, out64 = _checked(in_scores, out_scores)
    sorted_in = torch.sort(in64).values
    below = torch.searchsorted(sorted_in, out64, right=False)  # in-scores strictly below each out-score
    at_or_below = torch.searchsorted(sorted_in, out64, right=True)
    twice_u = int((below + at_or_below).sum())  # 2 * (#greater + 0.5 #equal), an exact integer
    return twice_u / (2 * in64.shape[0] * out64.shape[0])


def _average_precision(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """`sum_t (tp_t - tp_{t-1}) / n_pos * tp_t / (tp_t + fp_t)` over distinct thresholds t."""
    tp, fp = _cumulative_counts(positive, negative)
    gained = torch.diff(tp, prepend=tp.new_zeros(1))
    terms = [g * t / (t + f) for g, t, f in zip(gained.tolist(), tp.tolist(), fp.tolist()) if g]
    return math.fsum(terms) / positive.shape[0]


def aupr_out(in_scores: torch.Tensor, out_scores: torch.Tensor) -> float:
    """Average precision with OOD as the positive class and the scores as they are."""
    in64, out64 = _checked(in_scores, out_scores)
    return _average_precision(out64, in64)


def aupr_in(in_scores: torch.Tensor, out_scores: torch.Tensor) -> float:
    """Average precision with in-distribution as the positive class and the scores negated."""
    in64, out64 = _checked(in_scores, out_scores)
    return _average_precision(-in64, -out64)


def fpr_at_tpr(in_scores: torch.Tensor, out_scores: torch.Tensor, tpr: float = 0.95) -> float:
    """FPR (fraction of in-distribution flagged) at the highest distinct threshold whose TPR >= `tpr`."""
    check_number("tpr", tpr, 0.0, 1.0, strict_low=True)
    in64, out64 = _checked(in_scores, out_scores)
    tp, fp = _cumulative_counts(out64, in64)
    # tp / n is the correctly rounded ratio, so e.g. 19/20 >= 0.95 holds exactly as written.
    reached = torch.tensor([t / out64.shape[0] >= tpr for t in tp.tolist()])
    first = int(reached.to(torch.int64).argmax())  # the last threshold always reaches TPR = 1
    return int(fp[first]) / in64.shape[0]


def detection_metrics(in_scores: torch.Tensor, out_scores: torch.Tensor) -> dict[str, float]:
    """`{"auroc", "aupr_in", "aupr_out", "fpr95"}` as plain floats (FPR at TPR 0.95)."""
    return {
        "auroc": auroc(in_scores, out_scores),
        "aupr_in": aupr_in(in_scores, out_scores),
        "aupr_out": aupr_out(in_scores, out_scores),
        "fpr95": fpr_at_tpr(in_scores, out_scores, 0.95),
    }
