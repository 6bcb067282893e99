"""Out-of-distribution detection metrics from scores where higher means more likely OOD.

Inputs are 1-D real tensors: `in_scores: (N_in,)` on in-distribution data and `out_scores: (N_out,)` on OOD
data. Which class is "positive" changes AUPR and FPR at 95% TPR, so each comes in both conventions, named by
the positive class (`CONVENTIONS` says it in words for reports):

- `auroc` is the Mann-Whitney statistic `P(s_out > s_in) + 0.5 P(s_out = s_in)` over all (out, in) pairs,
  counted in integers (twice the statistic) and divided once. It is the same in both conventions.
- `aupr_out` / `aupr_in` are average precision over distinct thresholds (sklearn's
  `average_precision_score`): `AP = sum_t (R_t - R_{t-1}) P_t`, where examples with equal scores enter
  together at threshold t ("score >= t"). `aupr_out` takes OOD as positive; `aupr_in` takes in-distribution
  as positive and negates the scores. A random detector scores the positive class's share, `aupr_*_chance`.
- `fpr_at_tpr(..., positive="in")`, the OOD literature's FPR95 (Liang et al. 2018, Hendrycks et al. 2019):
  "score <= t" is accepted as in-distribution at the lowest distinct threshold t that accepts a fraction >=
  `tpr` of the in-distribution data; it returns the fraction of OOD data accepted there (OOD missed).
  `positive="out"`: "score >= t" is flagged OOD at the highest t flagging a fraction >= `tpr` of the OOD
  data; it returns the fraction of in-distribution data flagged there (false alarms).

Ties are handled exactly, with no tie-breaking by input order. Scores one unit in the last place apart (in the
scores' own dtype; chains of such neighbours included) count as ties: the same input scored in two batches can
come out one ulp apart, and an exact comparison would then rank identical inputs.
"""

from __future__ import annotations

import math

import torch

from mheads.core.checks import check_number

__all__ = [
    "CONVENTIONS",
    "check_scores",
    "auroc",
    "aupr_out",
    "aupr_in",
    "fpr_at_tpr",
    "threshold_at_tpr",
    "detection_metrics",
]

POSITIVES = ("in", "out")
CONVENTIONS = {
    "scores": "higher = more likely out-of-distribution (OOD)",
    "auroc": "P(OOD score > in-distribution score) + 0.5 P(equal); the same whichever class is positive",
    "aupr_in": "average precision with in-distribution as the positive class; chance = aupr_in_chance",
    "aupr_out": "average precision with OOD as the positive class; chance = aupr_out_chance",
    "fpr95_in": "the OOD literature's FPR95: in-distribution positive; the fraction of OOD accepted as "
    "in-distribution at the threshold that accepts 95% of the in-distribution data",
    "fpr95_out": "OOD positive: the fraction of in-distribution data flagged as OOD at the threshold that "
    "flags 95% of the OOD data",
}


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


def _merge_ulp_ties(scores64: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Each run of distinct finite values that are one ulp (of `dtype`) apart replaced by its smallest."""
    if not dtype.is_floating_point:
        return scores64  # integers compare exactly
    values, inverse = torch.unique(scores64, sorted=True, return_inverse=True)
    if values.shape[0] < 2:
        return scores64
    low, high = values[:-1].to(dtype), values[1:].to(dtype)  # exact: every value came from `dtype`
    step = torch.nextafter(low, torch.full_like(low, math.inf))
    near = (step >= high) & torch.isfinite(low) & torch.isfinite(high)
    starts = torch.cat([torch.ones(1, dtype=torch.bool), ~near])
    return values[starts][starts.cumsum(0) - 1][inverse]


def _checked(in_scores: torch.Tensor, out_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    in64, out64 = check_scores("in_scores", in_scores), check_scores("out_scores", out_scores)
    dtype = torch.promote_types(in_scores.dtype, out_scores.dtype)
    merged = _merge_ulp_ties(torch.cat([in64, out64]), dtype)  # jointly: ties across the sets matter most
    return merged[: in64.shape[0]], merged[in64.shape[0] :]


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


def _fpr(positive: torch.Tensor, negative: torch.Tensor, tpr: float) -> float:
    """Fraction of `negative` flagged ("score >= t") at the highest distinct t flagging >= `tpr` of
    `positive`."""
    tp, fp = _cumulative_counts(positive, negative)
    # tp / n is the correctly rounded ratio, so e.g. 19/20 >= 0.95 holds exactly as written.
    reached = torch.tensor([t / positive.shape[0] >= tpr for t in tp.tolist()])
    first = int(reached.to(torch.int64).argmax())  # the last threshold always reaches TPR = 1
    return int(fp[first]) / negative.shape[0]


def fpr_at_tpr(
    in_scores: torch.Tensor, out_scores: torch.Tensor, tpr: float = 0.95, *, positive: str
) -> float:
    """FPR at the threshold whose TPR first reaches `tpr`, with `positive` ("in" or "out") the positive
    class (see the module docstring: "in" is the OOD literature's convention)."""
    if positive not in POSITIVES:
        raise ValueError(
            f"positive: got {positive!r}; expected 'in' (in-distribution, the OOD literature's "
            "convention) or 'out'"
        )
    check_number("tpr", tpr, 0.0, 1.0, strict_low=True)
    in64, out64 = _checked(in_scores, out_scores)
    return _fpr(-in64, -out64, tpr) if positive == "in" else _fpr(out64, in64, tpr)


def threshold_at_tpr(in_scores: torch.Tensor, tpr: float = 0.95) -> float:
    """The lowest in-distribution score t with a fraction >= `tpr` of `in_scores` at or below it: flagging
    "score > t" as OOD keeps that fraction of in-distribution data (the threshold of `fpr95_in`)."""
    check_number("tpr", tpr, 0.0, 1.0, strict_low=True)
    in64 = check_scores("in_scores", in_scores)
    ordered = torch.sort(in64).values
    n = ordered.shape[0]
    k = next(k for k in range(1, n + 1) if k / n >= tpr)  # k / n correctly rounded, as in `fpr_at_tpr`
    return float(ordered[k - 1])


def detection_metrics(in_scores: torch.Tensor, out_scores: torch.Tensor) -> dict[str, float]:
    """`{"auroc", "aupr_in", "aupr_in_chance", "aupr_out", "aupr_out_chance", "fpr95_in", "fpr95_out"}` as
    plain floats (FPR at TPR 0.95 in both conventions; `CONVENTIONS` names each)."""
    in64, out64 = _checked(in_scores, out_scores)
    total = in64.shape[0] + out64.shape[0]
    return {
        "auroc": auroc(in64, out64),
        "aupr_in": aupr_in(in64, out64),
        "aupr_in_chance": in64.shape[0] / total,
        "aupr_out": aupr_out(in64, out64),
        "aupr_out_chance": out64.shape[0] / total,
        "fpr95_in": fpr_at_tpr(in64, out64, 0.95, positive="in"),
        "fpr95_out": fpr_at_tpr(in64, out64, 0.95, positive="out"),
    }
