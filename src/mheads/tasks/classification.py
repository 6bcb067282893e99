"""Classification (the paper's task): member logits `(M, B, C)`, integer targets `(B,)`.

`Classification` wraps today's math unchanged: `loss` is `mheads.ensemble.losses.compute_loss` (same names,
same numbers), `member_losses` the members' (optionally label-smoothed) cross-entropies `(M, B)`, `combine`
the probability average (`ensemble_probs`, `(B, C)`), confident MCL's penalty `KL(U || p_m)`. The oracle's
error is each member's top-1 error (0 or 1), so `1 - mean oracle error` is the paper's oracle accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from mheads.core.checks import check_int, check_number
from mheads.ensemble.combine import (
    ensemble_log_probs,
    ensemble_probs,
    ensemble_scores,
    member_log_probs,
)
from mheads.ensemble.loss_terms import check_inputs, uniform_kl
from mheads.ensemble.losses import LOSS_ALIASES, LOSSES, LossResult, compute_loss, smoothed_nll
from mheads.ensemble.metrics import LOGITS_WHY, non_finite
from mheads.tasks.base import Task, Terms

__all__ = ["Classification", "classification"]

CE_NAMES = {v: k for k, v in LOSS_ALIASES.items()}  # "independent" -> "independent_ce"


@dataclass(frozen=True)
class Classification(Task):
    """`num_classes`: C (the head width; None: taken from the outputs, `head_width` then unknown).
    `label_smoothing`: in [0, 1], as `compute_loss`'s."""

    num_classes: int | None = None
    label_smoothing: float = 0.0
    name: ClassVar[str] = "classification"
    averaged: ClassVar[tuple[str, ...]] = ("score_averaged_ce", "prob_averaged_ce")
    non_finite_why: ClassVar[str] = LOGITS_WHY

    def __post_init__(self) -> None:
        if self.num_classes is not None:
            check_int("num_classes", self.num_classes, 1)
        check_number("label_smoothing", self.label_smoothing, 0.0, 1.0)

    def head_width(self) -> int:
        if self.num_classes is None:
            raise ValueError("num_classes: got None; give the number of classes to know the head width")
        return self.num_classes

    def check(self, outputs: torch.Tensor, target: torch.Tensor) -> None:
        check_inputs(outputs, target)
        if self.num_classes is not None and outputs.shape[-1] != self.num_classes:
            raise ValueError(
                f"outputs: got {outputs.shape[-1]} classes; expected num_classes = {self.num_classes}"
            )

    def member_losses(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """`(M, B, C), (B,) -> (M, B)` cross-entropies, computed as `compute_loss` does."""
        self.check(outputs, target)
        return smoothed_nll(member_log_probs(outputs), target, self.label_smoothing)

    def combine(self, outputs: torch.Tensor) -> torch.Tensor:
        """`(M, B, C) -> (B, C)`: the members' mean probabilities (section 6.1)."""
        return ensemble_probs(outputs)

    def combined_loss(self, name: str, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per example `(B,)`: "prob_averaged_ce" (cross-entropy of the mean probabilities) or
        "score_averaged_ce" (of the softmax of the mean scores)."""
        if name == "prob_averaged_ce":
            log_probs = ensemble_log_probs(outputs)
        elif name == "score_averaged_ce":
            log_probs = member_log_probs(ensemble_scores(outputs).unsqueeze(0))[0]
        else:
            return super().combined_loss(name, outputs, target)
        return smoothed_nll(log_probs.unsqueeze(0), target, self.label_smoothing)[0]

    def penalty(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """`KL(U || p_m)` per member and example, `(M, B)` (confident MCL)."""
        return uniform_kl(member_log_probs(outputs))

    def non_finite(self, outputs: torch.Tensor) -> torch.Tensor:
        """`(M, B, C) -> (M, B)`: logits with no softmax (a NaN, a +inf, -inf on every class); a -inf class
        mask is scored as `mheads.ensemble.metrics` scores it."""
        return non_finite(outputs.detach())

    def errors(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Top-1 error per member and example, `(M, B)` float64 of 0 and 1."""
        return (outputs.detach().argmax(dim=-1) != target).to(torch.float64)

    def loss_names(self) -> tuple[str, ...]:
        """Classification's registry (`LOSSES`, with any loss registered there) and "independent", every other
        task's name of "independent_ce" (the same per-example member losses and loss)."""
        return tuple(LOSSES) + tuple(name for name in CE_NAMES if name not in LOSSES)

    def loss(self, name: str, outputs: torch.Tensor, target: torch.Tensor, **params: Any) -> LossResult:
        """`compute_loss(name, outputs, target, label_smoothing=self.label_smoothing, **params)`;
        "independent" (every other task's name of it) is "independent_ce"."""
        if name not in self.loss_names():
            names = ", ".join(self.loss_names())
            raise ValueError(f"loss: got {name!r}; expected one of {names} for task 'classification'")
        self.check(outputs, target)
        name = CE_NAMES.get(name, name)
        return compute_loss(name, outputs, target, label_smoothing=self.label_smoothing, **params)

    def metric_terms(self, outputs: torch.Tensor, target: torch.Tensor, **extra: Any) -> Terms:
        self.check(outputs, target)
        logits = outputs.detach().to(torch.float64)
        target = target.long()
        hits = logits.argmax(dim=-1) == target  # (M, B)
        log_probs = member_log_probs(logits)
        member_nll = -log_probs.gather(-1, target.view(1, -1, 1).expand(logits.shape[0], -1, 1))[..., 0]
        mean_log_probs = ensemble_log_probs(logits)
        return {
            "ensemble_correct": (ensemble_probs(logits).argmax(dim=-1) == target).sum(),
            "ensemble_correct_scores": (ensemble_scores(logits).argmax(dim=-1) == target).sum(),
            "oracle_correct": hits.any(dim=0).sum(),
            "member_correct": hits.sum(dim=1),
            "nll": -mean_log_probs.gather(-1, target.view(-1, 1))[:, 0],
            "mean_member_nll": member_nll.mean(dim=0),
        }

    def finish_metrics(self, sums: dict[str, Any], num_examples: int) -> dict[str, Any]:
        """`ensemble_mean_acc` (mean probabilities), `ensemble_mean_acc_scores`, `oracle_acc`, `member_acc`
        (M), `nll` (probability-averaged), `mean_member_nll`; the same definitions as
        `mheads.ensemble.metrics`."""
        n = num_examples
        return {
            "num_examples": n,
            "ensemble_mean_acc": int(sums["ensemble_correct"]) / n,
            "ensemble_mean_acc_scores": int(sums["ensemble_correct_scores"]) / n,
            "oracle_acc": int(sums["oracle_correct"]) / n,
            "member_acc": [int(c) / n for c in sums["member_correct"].tolist()],
            "nll": sums["nll"] / n,
            "mean_member_nll": sums["mean_member_nll"] / n,
        }


def classification(num_classes: int | None = None, *, label_smoothing: float = 0.0) -> Classification:
    """The classification task (member logits `(M, B, C)`, targets `(B,)`)."""
    return Classification(num_classes, label_smoothing)
