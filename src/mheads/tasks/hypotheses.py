"""Multiple hypotheses with scores (resilient MCL, Letzelter et al. NeurIPS 2023): each member is one
hypothesis for a D-dimensional target, and a score: the probability that it is the hypothesis MCL assigns
the input.

Shapes: `outputs: (M, B, D + 1)`, the first D columns the hypothesis, the last the score logit (`with_scores`
builds it from `TreeNet.forward_with_scores`' `(M, B, D)` and `(M, B)`); `target: (B, D)` (or `(B,)` when D =
1). `samples: (B, N, D)` (metrics only, optional): draws from the known target distribution per input.

Member losses `(M, B)`: the squared Euclidean distance (`distance="sq"`) or the distance itself (`"l2"`)
between hypothesis and target. The task's default loss is "mcl_scored" (WTA on the hypotheses plus the BCE of
each score against "won"), its score logits read from the outputs; every other ensemble loss applies too
(their scores then learn nothing). `combine` gives `WeightedHypotheses(points (M, B, D), weights (M, B))`, the
weights the scores' sigmoids normalised over members. "averaged" is the distance of the weighted mean.

Metrics: `oracle_error` (per example the smallest Euclidean distance over hypotheses, i.e. minADE),
`distortion` (the score-weighted expected squared distance, `sum_m w_m |y - h_m|^2`), `weighted_mean_error`
(Euclidean distance of the weighted mean) and, with `samples`, the earth mover's distance W_p between the
weighted hypotheses and the samples: "emd" for D = 1 (exact, `wasserstein_1d`) or "sliced_emd" for D > 1 (a
sliced estimate, `sliced_wasserstein`, `projections` seeded directions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch

from mheads.core.checks import check_choice, check_int, check_number
from mheads.ensemble.combine import compute_dtype
from mheads.tasks.base import Task, Terms, check_outputs, check_vector_target, non_finite_members
from mheads.tasks.transport import sliced_wasserstein, wasserstein_1d

__all__ = ["MultiHypothesis", "WeightedHypotheses", "multi_hypothesis", "with_scores"]

DISTANCES = ("sq", "l2")
HYPOTHESES_WHY = (
    "NaN or inf outputs have no error to score; expected finite outputs (a -inf score logit, a hypothesis "
    "switched off, is allowed where some member's score is not -inf)"
)


class WeightedHypotheses(NamedTuple):
    """The combined prediction: `points: (M, B, D)`, `weights: (M, B)` summing to 1 over members."""

    points: torch.Tensor
    weights: torch.Tensor

    def mean(self) -> torch.Tensor:
        """`(B, D)` the weighted mean hypothesis."""
        return (self.weights.unsqueeze(-1) * self.points).sum(dim=0)


def with_scores(hypotheses: torch.Tensor, score_logits: torch.Tensor) -> torch.Tensor:
    """`(M, B, D)` hypotheses and `(M, B)` score logits -> the task's outputs `(M, B, D + 1)`."""
    return torch.cat([hypotheses, score_logits.unsqueeze(-1).to(hypotheses.dtype)], dim=-1)


@dataclass(frozen=True)
class MultiHypothesis(Task):
    """`dim`: D. `distance`: the member loss, "sq" (squared Euclidean) or "l2". `p`: the EMD's order (>= 1).
    `projections` and `seed`: the sliced EMD's directions (D > 1)."""

    dim: int = 1
    distance: str = "sq"
    p: float = 1.0
    projections: int = 128
    seed: int = 0
    name: ClassVar[str] = "multi_hypothesis"
    averaged: ClassVar[tuple[str, ...]] = ("averaged",)
    default_loss: ClassVar[str] = "mcl_scored"
    non_finite_why: ClassVar[str] = HYPOTHESES_WHY

    def __post_init__(self) -> None:
        check_int("dim", self.dim, 1)
        check_choice("distance", self.distance, DISTANCES)
        check_number("p", self.p, 1.0)
        check_int("projections", self.projections, 1)
        check_int("seed", self.seed, 0)

    def head_width(self) -> int:
        return self.dim + 1

    def check(self, outputs: torch.Tensor, target: torch.Tensor) -> None:
        check_outputs(outputs, target)
        if outputs.ndim != 3 or outputs.shape[-1] != self.dim + 1:
            raise ValueError(
                f"outputs: got shape {tuple(outputs.shape)}; expected (M, B, D + 1) = "
                f"(M, B, {self.dim + 1}) (hypothesis, then score logit)"
            )
        check_vector_target(target, self.dim)

    def _target(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.check(outputs, target)
        return target.reshape(target.shape[0], self.dim).to(compute_dtype(outputs))

    def hypotheses(self, outputs: torch.Tensor) -> torch.Tensor:
        """`(M, B, D + 1) -> (M, B, D)`."""
        return outputs[..., : self.dim].to(compute_dtype(outputs))

    def score_logits(self, outputs: torch.Tensor) -> torch.Tensor:
        """`(M, B, D + 1) -> (M, B)`."""
        return outputs[..., self.dim].to(compute_dtype(outputs))

    def _distance(self, points: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        sq = (points - y).square().sum(dim=-1)
        return sq if self.distance == "sq" else sq.sqrt()

    def member_losses(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._distance(self.hypotheses(outputs), self._target(outputs, target))

    def combine(self, outputs: torch.Tensor) -> WeightedHypotheses:
        scores = torch.sigmoid(self.score_logits(outputs))
        return WeightedHypotheses(self.hypotheses(outputs), scores / scores.sum(dim=0, keepdim=True))

    def combined_loss(self, name: str, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if name != "averaged":
            return super().combined_loss(name, outputs, target)
        return self._distance(self.combine(outputs).mean(), self._target(outputs, target))

    def non_finite(self, outputs: torch.Tensor) -> torch.Tensor:
        """`(M, B, D + 1) -> (M, B)`: a NaN or inf hypothesis, a NaN or +inf score logit, or every member's
        score -inf on the example (its weights have no normalisation: every member is flagged). A -inf score
        is a hypothesis switched off: weight 0, its hypothesis still scored (the oracle may pick it)."""
        if outputs.ndim != 3 or outputs.shape[-1] != self.dim + 1:  # the task's own check names the shape
            return super().non_finite(outputs)
        outputs = outputs.detach()
        scores = outputs[..., self.dim]
        bad = non_finite_members(outputs[..., : self.dim]) | torch.isnan(scores) | (scores == torch.inf)
        return bad | (scores == -torch.inf).all(dim=0)

    def errors(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Euclidean distance of each hypothesis to the target, `(M, B)` float64."""
        outputs = outputs.detach().to(torch.float64)
        return (self.hypotheses(outputs) - self._target(outputs, target)).square().sum(dim=-1).sqrt()

    def emd(self, outputs: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """Per example `(B,)`: W_p between the weighted hypotheses and `samples: (B, N, D)` (exact for D = 1,
        sliced for D > 1; see the module docstring)."""
        outputs = outputs.detach().to(torch.float64)
        if samples.ndim != 3 or samples.shape[0] != outputs.shape[1] or samples.shape[-1] != self.dim:
            raise ValueError(
                f"samples: got shape {tuple(samples.shape)}; expected (B, N, D) = "
                f"({outputs.shape[1]}, N, {self.dim})"
            )
        combined = self.combine(outputs)
        points, weights = combined.points.transpose(0, 1), combined.weights.T  # (B, M, D), (B, M)
        samples = samples.to(torch.float64)
        if self.dim == 1:
            return wasserstein_1d(points[..., 0], samples[..., 0], weights, None, self.p)
        generator = torch.Generator().manual_seed(self.seed)
        return sliced_wasserstein(
            points, samples, weights, None, self.p, projections=self.projections, generator=generator
        )

    def metric_terms(
        self,
        outputs: torch.Tensor,
        target: torch.Tensor,
        *,
        samples: torch.Tensor | None = None,
        **extra: Any,
    ) -> Terms:
        outputs = outputs.detach().to(torch.float64)
        y = self._target(outputs, target)
        combined = self.combine(outputs)
        distances = self.errors(outputs, target)  # (M, B)
        terms = {
            "oracle_error": distances.min(dim=0).values,
            "distortion": (combined.weights * distances.square()).sum(dim=0),
            "weighted_mean_error": (combined.mean() - y).square().sum(dim=-1).sqrt(),
        }
        if samples is not None:
            terms["emd" if self.dim == 1 else "sliced_emd"] = self.emd(outputs, samples)
        return terms

    def finish_metrics(self, sums: dict[str, Any], num_examples: int) -> dict[str, Any]:
        return {"num_examples": num_examples, **{k: v / num_examples for k, v in sums.items()}}


def multi_hypothesis(
    dim: int = 1, *, distance: str = "sq", p: float = 1.0, projections: int = 128, seed: int = 0
) -> MultiHypothesis:
    """The multiple-hypotheses task; see the module docstring."""
    return MultiHypothesis(dim, distance, p, projections, seed)
