"""Regression: each member predicts a point or a diagonal Gaussian for a D-dimensional target.

Shapes: `outputs: (M, B, W)` with W = `head_width()`: D for point heads, 2D for Gaussian heads (the first D
columns the mean, the last D the variance's raw parameter, mapped by softplus or exp plus `min_variance`);
`target: (B, D)` (or `(B,)` when D = 1).

Member losses `(M, B)`: point heads the squared (`loss="mse"`) or absolute (`"l1"`) error averaged over the D
dimensions; Gaussian heads the full negative log-likelihood, summed over dimensions,
`sum_d 0.5 (log 2 pi + log var + (y - mu)^2 / var)`.

`combine` gives the equal-weight mixture's moments as `RegressionPrediction(mean, aleatoric, epistemic)`, each
`(B, D)`: mean = mean of member means; aleatoric = mean of member variances (0 for point heads); epistemic =
variance of member means (over members, 1/M); the mixture's variance is their sum (law of total variance).
Losses of the combined prediction (`averaged`): "averaged" (point: the loss of the mean prediction;
Gaussian: the NLL of the moment-matched Gaussian) and, for Gaussian heads, "mixture_nll" (the NLL of the
mixture, `-log mean_m N(y; mu_m, var_m)`). The oracle error is the squared error, averaged over D.

Metrics: `rmse`, `mae` (of the mean prediction), `oracle_rmse` (per example the best member's squared error),
`member_rmse` (M); Gaussian heads also `mixture_nll`, `aleatoric`, `epistemic` (means over examples and
dimensions) and `coverage` (per level in `levels`, the fraction of (example, dimension) pairs whose target
falls in the mixture's central interval of that probability, read from the mixture CDF: `F(y)` within
`[(1 - level) / 2, (1 + level) / 2]`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F

from mheads.core.checks import check_choice, check_int, check_number
from mheads.ensemble.combine import compute_dtype, ensemble_nll_from_members
from mheads.tasks.base import Task, Terms, check_outputs, check_vector_target

__all__ = ["HEADS", "Regression", "RegressionPrediction", "regression"]

HEADS = ("point", "gaussian")
POINT_LOSSES = ("mse", "l1")
VARIANCES = ("softplus", "exp")
LOG_2PI = math.log(2 * math.pi)


class RegressionPrediction(NamedTuple):
    """The combined prediction, each `(B, D)`; `variance` = aleatoric + epistemic, the mixture's."""

    mean: torch.Tensor
    aleatoric: torch.Tensor
    epistemic: torch.Tensor

    @property
    def variance(self) -> torch.Tensor:
        return self.aleatoric + self.epistemic


def gaussian_nll(mean: torch.Tensor, var: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`(..., D)` mean, variance and target -> `(...)` the diagonal Gaussian NLL summed over D."""
    return 0.5 * (LOG_2PI + torch.log(var) + (y - mean).square() / var).sum(dim=-1)


@dataclass(frozen=True)
class Regression(Task):
    """`dim`: D. `head`: "point" or "gaussian". `loss_kind`: point heads' "mse" or "l1". `variance`: Gaussian
    heads' map from the raw output to the variance, "softplus" or "exp", plus `min_variance` (> 0).
    `levels`: the central-interval probabilities whose coverage the metrics report."""

    dim: int = 1
    head: str = "point"
    loss_kind: str = "mse"
    variance: str = "softplus"
    min_variance: float = 1e-6
    levels: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)
    name: ClassVar[str] = "regression"

    def __post_init__(self) -> None:
        check_int("dim", self.dim, 1)
        check_choice("head", self.head, HEADS)
        check_choice("loss", self.loss_kind, POINT_LOSSES)
        check_choice("variance", self.variance, VARIANCES)
        check_number("min_variance", self.min_variance, 0.0, strict_low=True)
        for level in self.levels:
            check_number("levels[]", level, 0.0, 1.0, strict_low=True)

    @property
    def averaged(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("averaged", "mixture_nll") if self.head == "gaussian" else ("averaged",)

    def head_width(self) -> int:
        return 2 * self.dim if self.head == "gaussian" else self.dim

    def check(self, outputs: torch.Tensor, target: torch.Tensor) -> None:
        check_outputs(outputs, target)
        if outputs.ndim != 3 or outputs.shape[-1] != self.head_width():
            raise ValueError(
                f"outputs: got shape {tuple(outputs.shape)}; expected "
                f"(M, B, {self.head_width()}) for {self.head} heads of dimension {self.dim}"
            )
        check_vector_target(target, self.dim)

    def _target(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.check(outputs, target)
        return target.reshape(target.shape[0], self.dim).to(compute_dtype(outputs))

    def moments(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(M, B, W)` -> member means and variances, each `(M, B, D)` (variances 0 for point heads)."""
        outputs = outputs.to(compute_dtype(outputs))
        mean = outputs[..., : self.dim]
        if self.head == "point":
            return mean, torch.zeros_like(mean)
        raw = outputs[..., self.dim :]
        var = F.softplus(raw) if self.variance == "softplus" else torch.exp(raw)
        return mean, var + self.min_variance

    def member_losses(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y = self._target(outputs, target)
        mean, var = self.moments(outputs)
        if self.head == "gaussian":
            return gaussian_nll(mean, var, y)
        error = y - mean
        return (error.square() if self.loss_kind == "mse" else error.abs()).mean(dim=-1)

    def combine(self, outputs: torch.Tensor) -> RegressionPrediction:
        mean, var = self.moments(outputs)
        return RegressionPrediction(mean.mean(dim=0), var.mean(dim=0), mean.var(dim=0, correction=0))

    def combined_loss(self, name: str, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y = self._target(outputs, target)
        if name == "mixture_nll" and self.head == "gaussian":
            return ensemble_nll_from_members(self.member_losses(outputs, target))
        if name != "averaged":
            return super().combined_loss(name, outputs, target)
        combined = self.combine(outputs)
        if self.head == "gaussian":
            return gaussian_nll(combined.mean, combined.variance, y)
        error = y - combined.mean
        return (error.square() if self.loss_kind == "mse" else error.abs()).mean(dim=-1)

    def errors(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Squared error of each member's mean, averaged over D: `(M, B)` float64."""
        y = self._target(outputs, target).detach().to(torch.float64)
        return (y - self.moments(outputs.detach().to(torch.float64))[0]).square().mean(dim=-1)

    def metric_terms(self, outputs: torch.Tensor, target: torch.Tensor, **extra: Any) -> Terms:
        outputs = outputs.detach().to(torch.float64)
        y = self._target(outputs, target).detach().to(torch.float64)
        combined = self.combine(outputs)
        error = y - combined.mean  # (B, D)
        member_se = self.errors(outputs, target)  # (M, B)
        terms = {
            "se": error.square().mean(dim=-1),
            "ae": error.abs().mean(dim=-1),
            "oracle_se": member_se.min(dim=0).values,
        }
        terms.update({f"member_se_{m}": member_se[m] for m in range(member_se.shape[0])})
        if self.head == "gaussian":
            mean, var = self.moments(outputs)
            terms["mixture_nll"] = ensemble_nll_from_members(gaussian_nll(mean, var, y))
            terms["aleatoric"] = combined.aleatoric.mean(dim=-1)
            terms["epistemic"] = combined.epistemic.mean(dim=-1)
            cdf = torch.special.ndtr((y - mean) / var.sqrt()).mean(dim=0)  # (B, D) the mixture's F(y)
            for level in self.levels:
                inside = (cdf >= (1 - level) / 2) & (cdf <= (1 + level) / 2)
                terms[f"coverage_{level}"] = inside.to(torch.float64).mean(dim=-1)
        return terms

    def finish_metrics(self, sums: dict[str, Any], num_examples: int) -> dict[str, Any]:
        n = num_examples
        members = sorted(int(k.rsplit("_", 1)[1]) for k in sums if k.startswith("member_se_"))
        out = {
            "num_examples": n,
            "rmse": math.sqrt(sums["se"] / n),
            "mae": sums["ae"] / n,
            "oracle_rmse": math.sqrt(sums["oracle_se"] / n),
            "member_rmse": [math.sqrt(sums[f"member_se_{m}"] / n) for m in members],
        }
        if self.head == "gaussian":
            out.update(
                {
                    "mixture_nll": sums["mixture_nll"] / n,
                    "aleatoric": sums["aleatoric"] / n,
                    "epistemic": sums["epistemic"] / n,
                    "coverage": {str(level): sums[f"coverage_{level}"] / n for level in self.levels},
                }
            )
        return out


def regression(
    dim: int = 1,
    *,
    head: str = "point",
    loss: str = "mse",
    variance: str = "softplus",
    min_variance: float = 1e-6,
    levels: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95),
) -> Regression:
    """The regression task; see the module docstring."""
    return Regression(dim, head, loss, variance, min_variance, tuple(levels))
