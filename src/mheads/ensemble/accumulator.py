"""Streaming ensemble metrics: feed a data set batch by batch, get exactly the whole-set values.

Counts are integers and floating sums are `ExactSum`s, so `compute()` after any split into batches returns
the same numbers, bit for bit, as the pure functions of `mheads.ensemble.metrics` on the whole set, provided
each example's float64 statistics do not depend on which batch it came in (true on CPU). Random tie-breaking
in the oracle assignment draws from `generator` in example order, so a CPU generator seeded the same way gives
the same assignment for any batching.
"""

from __future__ import annotations

import torch

from mheads.core.checks import check_int
from mheads.ensemble.combine import ensemble_nll_from_members, ensemble_probs, ensemble_scores, member_nll
from mheads.ensemble.exact_sum import ExactSum
from mheads.ensemble.metrics import (
    NUM_ECE_BINS,
    assignment_counts,
    brier_terms,
    calibration_terms,
    check_finite_counts,
    check_num_bins,
    disagreeing_pairs,
    ece_from_bins,
    ensemble_hits,
    fractions_per_class,
    non_finite,
    prepare,
)

__all__ = ["EnsembleMetrics", "TOPK"]

TOPK = 5  # `ensemble_top5_acc` uses k = min(TOPK, C)


def _positive_int(name: str, value: int) -> None:
    check_int(name, value, 1)


def _floats(values: torch.Tensor) -> list[float]:
    return values.to("cpu", torch.float64).tolist()


class EnsembleMetrics:
    """Accumulates ensemble metrics over batches of member logits `(M, B, C)` and targets `(B,)`.

    `compute()` returns plain Python numbers and lists (JSON-serialisable):
    `num_examples`, `ensemble_mean_acc` (averaged probabilities), `ensemble_mean_acc_scores` (averaged
    scores), `ensemble_top5_acc` (k = min(5, C)), `oracle_acc`, `member_acc` (M), `oracle_assignment`
    (M x C fractions, Figure 2), `nll` (probability-averaged ensemble), `brier`, `ece` (`num_bins`
    equal-width bins), `disagreement` (pairwise, top-1), `mean_member_nll`, `member_nll` (M). Non-finite
    logits (NaN or inf) are counted per member over every batch, and `compute()` refuses them
    (`mheads.ensemble.metrics.NonFiniteOutputs`, naming each member and on how many examples of the whole
    set), as the pure functions do.
    """

    def __init__(
        self,
        num_members: int,
        num_classes: int,
        generator: torch.Generator | None = None,
        *,
        num_bins: int = NUM_ECE_BINS,
    ) -> None:
        _positive_int("num_members", num_members)
        _positive_int("num_classes", num_classes)
        check_num_bins(num_bins)
        self.num_members = num_members
        self.num_classes = num_classes
        self.num_bins = num_bins
        self.topk = min(TOPK, num_classes)
        self.generator = generator
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far (the generator is left where it is)."""
        m, c = self.num_members, self.num_classes
        self._n = 0
        self._member_correct = torch.zeros(m, dtype=torch.int64)
        self._oracle_correct = 0
        self._ensemble_correct = 0
        self._ensemble_correct_scores = 0
        self._topk_correct = 0
        self._disagreeing_pairs = 0
        self._assigned = torch.zeros(m, c, dtype=torch.int64)
        self._class_sizes = torch.zeros(c, dtype=torch.int64)
        self._nll = ExactSum()
        self._brier = ExactSum()
        self._member_nll = [ExactSum() for _ in range(m)]
        self._bin_neg_confidence = [ExactSum() for _ in range(self.num_bins)]
        self._bin_correct = [0] * self.num_bins
        self._non_finite = torch.zeros(m, dtype=torch.int64)  # per member: examples with NaN/inf logits

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch: `logits: (M, B, C)`, `targets: (B,)` with the M and C given at construction."""
        logits64, targets = prepare(logits, targets, finite=False)
        expected = (self.num_members, self.num_classes)
        if (logits64.shape[0], logits64.shape[2]) != expected:
            raise ValueError(
                f"logits must have shape (M, B, C) with (M, C) = {expected}, got {tuple(logits64.shape)}"
            )
        bad = non_finite(logits64)  # (M, B): counted over the whole set, refused by compute()
        if bool(bad.any()):
            self._non_finite += bad.sum(dim=1).cpu()
            self._n += targets.shape[0]
            return
        predictions = logits64.argmax(dim=-1)  # (M, B)
        hits = predictions == targets
        self._member_correct += hits.sum(dim=1).cpu()
        self._oracle_correct += int(hits.any(dim=0).sum())
        self._disagreeing_pairs += int(disagreeing_pairs(predictions).sum())
        probs = ensemble_probs(logits64)  # (B, C)
        self._ensemble_correct += int(ensemble_hits(probs, targets, 1).sum())
        self._topk_correct += int(ensemble_hits(probs, targets, self.topk).sum())
        self._ensemble_correct_scores += int(ensemble_hits(ensemble_scores(logits64), targets, 1).sum())

        nll = member_nll(logits64, targets)  # (M, B)
        assigned, class_sizes = assignment_counts(nll, targets, self.num_classes, self.generator)
        self._assigned += assigned.cpu()
        self._class_sizes += class_sizes.cpu()
        self._nll.add(_floats(ensemble_nll_from_members(nll)))
        self._brier.add(_floats(brier_terms(probs, targets)))
        for total, values in zip(self._member_nll, nll):
            total.add(_floats(values))

        bins, correct, confidence = calibration_terms(probs, targets, self.num_bins)
        for b, hit, conf in zip(bins.tolist(), correct.tolist(), _floats(confidence)):
            self._bin_neg_confidence[b].add((-conf,))
            self._bin_correct[b] += hit
        self._n += targets.shape[0]

    def merge(self, other: EnsembleMetrics) -> EnsembleMetrics:
        """Add everything `other` accumulated (for example on another process), exactly; returns self."""
        if (other.num_members, other.num_classes, other.num_bins) != (
            self.num_members,
            self.num_classes,
            self.num_bins,
        ):
            raise ValueError(
                "cannot merge EnsembleMetrics with (num_members, num_classes, num_bins) = "
                f"{(other.num_members, other.num_classes, other.num_bins)} into "
                f"{(self.num_members, self.num_classes, self.num_bins)}"
            )
        self._n += other._n
        self._member_correct += other._member_correct
        self._oracle_correct += other._oracle_correct
        self._ensemble_correct += other._ensemble_correct
        self._ensemble_correct_scores += other._ensemble_correct_scores
        self._topk_correct += other._topk_correct
        self._disagreeing_pairs += other._disagreeing_pairs
        self._assigned += other._assigned
        self._class_sizes += other._class_sizes
        self._nll.merge(other._nll)
        self._brier.merge(other._brier)
        for mine, theirs in zip(self._member_nll, other._member_nll):
            mine.merge(theirs)
        for mine, theirs in zip(self._bin_neg_confidence, other._bin_neg_confidence):
            mine.merge(theirs)
        self._bin_correct = [a + b for a, b in zip(self._bin_correct, other._bin_correct)]
        self._non_finite += other._non_finite
        return self

    @property
    def num_examples(self) -> int:
        return self._n

    def compute(self) -> dict:
        """The metrics of every example added so far, as plain Python numbers and lists."""
        n = self._n
        if n == 0:
            raise RuntimeError("EnsembleMetrics.compute() needs at least one update() with examples")
        check_finite_counts(self._non_finite.tolist(), n)  # a NaN output's argmax would count as right
        m = self.num_members
        pairs = m * (m - 1) // 2
        all_member_nll = ExactSum()
        for total in self._member_nll:
            all_member_nll.merge(total)
        return {
            "num_examples": n,
            "ensemble_mean_acc": self._ensemble_correct / n,
            "ensemble_mean_acc_scores": self._ensemble_correct_scores / n,
            "ensemble_top5_acc": self._topk_correct / n,
            "oracle_acc": self._oracle_correct / n,
            "member_acc": [c / n for c in self._member_correct.tolist()],
            "oracle_assignment": fractions_per_class(self._assigned, self._class_sizes).tolist(),
            "nll": self._nll.value() / n,
            "brier": self._brier.value() / n,
            "ece": ece_from_bins(self._bin_neg_confidence, self._bin_correct, n),
            "disagreement": 0.0 if pairs == 0 else self._disagreeing_pairs / (n * pairs),
            "mean_member_nll": all_member_nll.value() / (m * n),
            "member_nll": [total.value() / n for total in self._member_nll],
        }
