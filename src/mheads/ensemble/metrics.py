"""Ensemble metrics on member logits `(M, B, C)` and integer targets `(B,)` (paper sections 3.2 and 6.2).

Pure functions of one batch (or a whole data set at once); `mheads.ensemble.accumulator.EnsembleMetrics`
accumulates the same quantities batch by batch and gives exactly the same values. Everything is computed in
float64 without gradients, and floating sums go through `ExactSum`, so the result never depends on batching.

Predictions are argmaxes with ties going to the lowest class index (torch.argmax's rule); top-k counts a
target as found when fewer than k classes rank ahead of it under the same rule.

Logits with no softmax (a NaN, a +inf, or -inf on every class) are refused with :class:`NonFiniteOutputs`,
naming each member that gave them and on how many examples: an argmax of NaN would count as right (NaN
logits scored `ensemble_mean_acc` 1.0), and their probabilities are NaN. A -inf on some classes (a model's
class mask) is a probability of 0 and is scored (a masked target's NLL is inf), as the uncertainty metrics
score it (`mheads.ensemble.uncertainty.check_member_logits`).
"""

from __future__ import annotations

import torch

from mheads.core.checks import check_int
from mheads.ensemble.assignment import topk_assignment
from mheads.ensemble.combine import (
    check_logits_targets,
    ensemble_nll,
    ensemble_probs,
    ensemble_scores,
    member_nll,
)
from mheads.ensemble.exact_sum import ExactSum

__all__ = [
    "NUM_ECE_BINS",
    "NonFiniteOutputs",
    "member_accuracy",
    "ensemble_mean_accuracy",
    "ensemble_topk_accuracy",
    "oracle_accuracy",
    "oracle_assignment",
    "negative_log_likelihood",
    "brier_score",
    "expected_calibration_error",
    "pairwise_disagreement",
    "mean_member_nll",
]

NUM_ECE_BINS = 15
AVERAGES = ("probs", "scores")


# ---------------------------------------------------------------- per-example statistics


LOGITS_WHY = (
    "NaN or +inf logits, or -inf on every class, have no probabilities to score; "
    "expected finite logits (-inf on some classes is allowed)"
)


class NonFiniteOutputs(ValueError):
    """Non-finite member outputs (see the module docstring); ``counts``: per member, the examples on which
    gave outputs with no score (:func:`non_finite` for logits), of ``num_examples``."""

    def __init__(self, counts: list[int], num_examples: int, why: str = LOGITS_WHY):
        self.counts, self.num_examples = counts, num_examples
        bad = [(m, c) for m, c in enumerate(counts) if c]
        named = ", ".join(f"member {m} ({c} of {num_examples} examples)" for m, c in bad[:8])
        more = f" and {len(bad) - 8} more members" if len(bad) > 8 else ""
        super().__init__(f"non-finite outputs in {named}{more}: {why}")


def non_finite(logits: torch.Tensor) -> torch.Tensor:
    """`(M, B, C)` -> `(M, B)` bool: the member's logits on the example have no softmax: a NaN, a +inf, or
    -inf on every class. A -inf on some classes (a class mask) has one: those classes get probability 0."""
    no_max = (torch.isnan(logits) | (logits == torch.inf)).any(dim=-1)
    return no_max | (logits == -torch.inf).all(dim=-1)


def check_finite_counts(counts: list[int], num_examples: int, why: str = LOGITS_WHY) -> None:
    """Raise :class:`NonFiniteOutputs` when any member has non-finite outputs (``counts``, per member);
    ``why``: the message's end (a task's outputs are not logits)."""
    if any(counts):
        raise NonFiniteOutputs(counts, num_examples, why)


def prepare(
    logits: torch.Tensor, targets: torch.Tensor, *, finite: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check inputs (target values included) and return float64 detached logits and int64 targets;
    ``finite`` also refuses non-finite logits (:class:`NonFiniteOutputs`)."""
    check_logits_targets(logits, targets, check_values=True)
    if finite:
        check_finite_counts(non_finite(logits).sum(dim=1).tolist(), targets.shape[0])
    return logits.detach().to(torch.float64), targets.long()


def target_rank(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Classes ranked ahead of the target: higher score, or equal score and lower index. `(..., B, C)` ->
    `(..., B)` int64; rank 0 is exactly `argmax == target`."""
    index = targets.view(*([1] * (scores.ndim - 2)), -1, 1).expand(*scores.shape[:-1], 1)
    target_score = scores.gather(-1, index)
    classes = torch.arange(scores.shape[-1], device=scores.device)
    ahead = (scores > target_score) | ((scores == target_score) & (classes < index))
    return ahead.sum(dim=-1)


def check_average(average: str) -> None:
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")


def check_topk(k: int, num_classes: int) -> None:
    check_int("top-k k", k, 1, num_classes)


def ensemble_hits(combined: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """`combined: (B, C)` averaged probabilities or scores -> `(B,)` bool: the target is in their top k."""
    return target_rank(combined, targets) < k


def combined_prediction(logits64: torch.Tensor, average: str) -> torch.Tensor:
    """`(M, B, C)` -> `(B, C)`: the averaged probabilities (`"probs"`) or averaged scores (`"scores"`)."""
    return ensemble_probs(logits64) if average == "probs" else ensemble_scores(logits64)


def assignment_counts(
    nll: torch.Tensor, targets: torch.Tensor, num_classes: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`nll: (M, B)` -> per class, how often each member has the lowest NLL (ties at random), `(M, C)` int64,
    and the class sizes `(C,)`."""
    lowest = topk_assignment(nll, 1, generator=generator)  # (M, B)
    counts = torch.zeros(nll.shape[0], num_classes, dtype=torch.int64, device=nll.device)
    counts.index_add_(1, targets, lowest.to(torch.int64))
    return counts, torch.bincount(targets, minlength=num_classes)


def brier_terms(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`probs: (B, C)` averaged probabilities -> `(B,)` `sum_c (p_c - 1[c = y])^2` (multi-class Brier,
    in [0, 2])."""
    one_hot = torch.nn.functional.one_hot(targets, probs.shape[-1]).to(probs.dtype)
    return (probs - one_hot).square().sum(dim=-1)


def calibration_terms(
    probs: torch.Tensor, targets: torch.Tensor, num_bins: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`probs: (B, C)` averaged probabilities -> confidence bin `(B,)` int64, correctness `(B,)` bool and
    confidence `(B,)`. Confidence is the largest probability; bin j is `(j/num_bins, (j+1)/num_bins]`."""
    predicted = probs.argmax(dim=-1)
    # Rounding can put a certain prediction a hair above 1.
    confidence = probs.gather(-1, predicted.unsqueeze(-1)).squeeze(-1).clamp(max=1.0)
    edges = torch.linspace(0.0, 1.0, num_bins + 1, dtype=torch.float64, device=probs.device)[1:-1]
    return torch.bucketize(confidence, edges, right=False), predicted == targets, confidence


def disagreeing_pairs(predictions: torch.Tensor) -> torch.Tensor:
    """`predictions: (M, B)` member top-1 classes -> `(B,)` int64 number of member pairs that differ."""
    pairs = torch.zeros(predictions.shape[1], dtype=torch.int64, device=predictions.device)
    for m in range(predictions.shape[0]):
        pairs += (predictions[m + 1 :] != predictions[m]).sum(dim=0)
    return pairs


def ece_from_bins(neg_confidence: list[ExactSum], correct: list[int], num_examples: int) -> float:
    """`(1/N) sum_b |correct_b - sum_{i in b} conf_i|`, each bin's gap rounded once from its exact value."""
    gaps = [abs(total.value(count)) for total, count in zip(neg_confidence, correct)]
    return ExactSum().add(gaps).value() / num_examples


def check_num_bins(num_bins: int) -> None:
    check_int("num_bins", num_bins, 1)


def _to_list(values: torch.Tensor) -> list[float]:
    return values.detach().to("cpu", torch.float64).tolist()


# ---------------------------------------------------------------- metrics


def member_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each member's top-1 accuracy, `(M,)` float64."""
    logits64, targets = prepare(logits, targets)
    counts = (logits64.argmax(dim=-1) == targets).sum(dim=1).tolist()
    return torch.tensor([c / targets.shape[0] for c in counts], dtype=torch.float64)


def ensemble_mean_accuracy(logits: torch.Tensor, targets: torch.Tensor, *, average: str = "probs") -> float:
    """Ensemble-Mean Accuracy (section 3.2): argmax of the averaged probabilities, or with
    `average="scores"` of the averaged scores."""
    return ensemble_topk_accuracy(logits, targets, 1, average=average)


def ensemble_topk_accuracy(
    logits: torch.Tensor, targets: torch.Tensor, k: int = 5, *, average: str = "probs"
) -> float:
    """Fraction of examples whose target is among the k most likely classes of the averaged prediction."""
    check_average(average)
    logits64, targets = prepare(logits, targets)
    check_topk(k, logits64.shape[-1])
    return int(ensemble_hits(combined_prediction(logits64, average), targets, k).sum()) / targets.shape[0]


def oracle_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Oracle Accuracy (section 3.2): fraction of examples on which at least one member's top-1 prediction
    is right, i.e. the accuracy of an oracle that picks the best member per example (M guesses)."""
    logits64, targets = prepare(logits, targets)
    return int((logits64.argmax(dim=-1) == targets).any(dim=0).sum()) / targets.shape[0]


def oracle_assignment(
    logits: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The data of Figure 2: for each class, the fraction of its examples on which each member has the
    lowest NLL, ties broken uniformly at random with `generator`. `(M, C)` float64; columns of classes with
    no examples are 0."""
    logits64, targets = prepare(logits, targets)
    if num_classes != logits64.shape[-1]:
        raise ValueError(f"num_classes must equal the logits' C = {logits64.shape[-1]}, got {num_classes!r}")
    counts, class_sizes = assignment_counts(member_nll(logits64, targets), targets, num_classes, generator)
    return fractions_per_class(counts.cpu(), class_sizes.cpu())


def fractions_per_class(counts: torch.Tensor, class_sizes: torch.Tensor) -> torch.Tensor:
    """`counts: (M, C)` int, `class_sizes: (C,)` int -> `(M, C)` float64, 0 where a class has no examples."""
    return counts.to(torch.float64) / class_sizes.clamp(min=1).to(torch.float64)


def negative_log_likelihood(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean NLL of the probability-averaged ensemble, `-(1/B) sum_i log mean_m p_m(y_i)`."""
    logits64, targets = prepare(logits, targets)
    return ExactSum().add(_to_list(ensemble_nll(logits64, targets))).value() / targets.shape[0]


def brier_score(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean multi-class Brier score of the averaged probabilities: `(1/B) sum_i sum_c (p_ic - 1[c = y_i])^2`,
    in [0, 2]."""
    logits64, targets = prepare(logits, targets)
    return ExactSum().add(_to_list(brier_terms(ensemble_probs(logits64), targets))).value() / targets.shape[0]


def expected_calibration_error(
    logits: torch.Tensor, targets: torch.Tensor, *, num_bins: int = NUM_ECE_BINS
) -> float:
    """Expected calibration error of the averaged probabilities with `num_bins` equal-width confidence bins:
    `sum_b (n_b / N) |accuracy_b - mean confidence_b|`."""
    check_num_bins(num_bins)
    logits64, targets = prepare(logits, targets)
    bins, correct, confidence = calibration_terms(ensemble_probs(logits64), targets, num_bins)
    bin_list, correct_list = bins.tolist(), correct.tolist()
    sums = [ExactSum() for _ in range(num_bins)]
    counts = [0] * num_bins
    for b, hit, conf in zip(bin_list, correct_list, _to_list(confidence)):
        sums[b].add((-conf,))
        counts[b] += hit
    return ece_from_bins(sums, counts, len(bin_list))


def pairwise_disagreement(logits: torch.Tensor) -> float:
    """Fraction of (member pair, example) combinations whose top-1 predictions differ; 0 for one member.
    `logits: (M, B, C)`."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.ndim != 3 or min(logits.shape) < 1:
        raise ValueError(f"logits must have shape (M, B, C) with M, B, C >= 1, got {tuple(logits.shape)}")
    num_members, batch, _ = logits.shape
    check_finite_counts(non_finite(logits.detach()).sum(dim=1).tolist(), batch)
    pairs = num_members * (num_members - 1) // 2
    if pairs == 0:
        return 0.0
    return int(disagreeing_pairs(logits.detach().argmax(dim=-1)).sum()) / (batch * pairs)


def mean_member_nll(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean over members and examples of each member's own NLL."""
    logits64, targets = prepare(logits, targets)
    nll = member_nll(logits64, targets)
    return ExactSum().add(_to_list(nll.flatten())).value() / nll.numel()
