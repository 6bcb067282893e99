"""A task run's evaluation (``mheads eval``, ``mheads.evaluate``; issue 32): the task's own metrics, exactly
what :meth:`~mheads.tasks.Task.metrics` gives on the whole split (the same additive terms, summed exactly),
plus what the eval report adds, and the per-example arrays its figures draw.

Added to every task's metrics (M members, N examples):

- ``win_share`` (M): per member, the share of examples where it is the oracle's pick (the lowest
  ``task.errors``, ties to the lowest index); they sum to 1, less the share of examples where no member has
  an error (a user's loss NaN on every member: ``Task.oracle``'s ``NO_MEMBER``). One member near 1 is MCL
  collapse.
- ``member_error`` (M): per member, the mean of ``task.errors``, the error the oracle picks by
  (regression: squared error; multi_hypothesis: Euclidean distance; segmentation: pixel error rate; a
  user's task: its loss).

Per task:

- regression with Gaussian heads: ``coverage_curve`` ``{"nominal": levels, "observed": shares}``, the
  mixture's central-interval coverage at ``COVERAGE_LEVELS`` (the task's own ``coverage`` terms at those
  levels; a calibrated ensemble lies on the diagonal);
- multi_hypothesis: ``member_score`` (M), each member's mean normalised score (a calibrated scoring head's
  matches its win share);
- segmentation: ``class_iou`` and ``oracle_class_iou`` (C), the per-class IoU of the ensemble and of the
  oracle (None for a class in neither the target nor the prediction; the mean of the others is
  ``mean_iou`` / ``oracle_mean_iou``).

Arrays (for figures; the first ``MAX_POINTS`` examples): regression ``target``, ``mean``, ``lower`` and
``upper`` (the mixture's central ``INTERVAL`` interval; point heads: the members' range), each ``(N, D)``;
multi_hypothesis with inputs of one feature and D = 1: ``x`` and ``target`` ``(N,)``, ``points`` and
``weights`` ``(M, N)``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from mheads.ensemble.exact_sum import ExactSum
from mheads.tasks import MultiHypothesis, Regression, Segmentation, Task
from mheads.tasks.base import NonFiniteCounts, Terms, first_argmin, reduce_terms

__all__ = [
    "COVERAGE_LEVELS",
    "INTERVAL",
    "TaskEvaluation",
    "class_iou",
    "evaluate_task",
    "extra_terms",
    "mixture_quantile",
]

COVERAGE_LEVELS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
INTERVAL = 0.9  # the predicted-vs-true figure's interval
MAX_POINTS = 2000  # examples kept for figures: a scatter of more says nothing more


def mixture_quantile(mean: torch.Tensor, var: torch.Tensor, q: float, steps: int = 60) -> torch.Tensor:
    """Member Gaussians ``mean, var: (M, B, D)`` -> ``(B, D)`` the ``q``-quantile of their equal-weight
    mixture, by bisection on its CDF (the CDF the task's ``coverage`` reads)."""
    sd = var.sqrt()
    lo, hi = (mean - 12 * sd).min(dim=0).values, (mean + 12 * sd).max(dim=0).values
    for _ in range(steps):
        mid = (lo + hi) / 2
        below = torch.special.ndtr((mid - mean) / sd).mean(dim=0) < q
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


def class_iou(confusion: torch.Tensor) -> list[float | None]:
    """``confusion: (C, C)`` counts (true, predicted) -> per class ``TP / (TP + FP + FN)``, None where the
    class is in neither."""
    tp = confusion.diagonal().to(torch.float64)
    union = confusion.sum(dim=0).to(torch.float64) + confusion.sum(dim=1).to(torch.float64) - tp
    return [float(t / u) if u > 0 else None for t, u in zip(tp.tolist(), union.tolist())]


def extra_terms(task: Task, outputs: torch.Tensor, target: torch.Tensor) -> Terms:
    """The report's additive terms of one batch (``outputs: (M, B, ...)``): oracle wins (counts ``(M,)``),
    each member's errors, the coverage grid (Gaussian regression) and the members' scores
    (multi_hypothesis)."""
    errors = task.errors(outputs, target)  # (M, B) float64
    M = errors.shape[0]
    found = ~torch.isnan(errors).all(dim=0)  # as Task.oracle: no member wins where none has an error
    terms: Terms = {"wins": torch.bincount(first_argmin(errors)[found].cpu(), minlength=M)}
    terms.update({f"member_error_{m}": errors[m] for m in range(M)})
    if isinstance(task, Regression) and task.head == "gaussian":
        grid = replace(task, levels=COVERAGE_LEVELS).metric_terms(outputs, target)
        terms.update({f"curve_{level}": grid[f"coverage_{level}"] for level in COVERAGE_LEVELS})
    if isinstance(task, MultiHypothesis):
        weights = task.combine(outputs.detach().to(torch.float64)).weights  # (M, B)
        terms.update({f"member_score_{m}": weights[m] for m in range(M)})
    return terms


def _finish_extra(task: Task, extra: dict[str, Any], sums: dict[str, Any], n: int) -> dict[str, Any]:
    wins = extra["wins"].tolist()
    members = range(len(wins))
    out: dict[str, Any] = {
        "win_share": [w / n for w in wins],
        "member_error": [extra[f"member_error_{m}"] / n for m in members],
    }
    if isinstance(task, Regression) and task.head == "gaussian":
        observed = [extra[f"curve_{level}"] / n for level in COVERAGE_LEVELS]
        out["coverage_curve"] = {"nominal": list(COVERAGE_LEVELS), "observed": observed}
    if isinstance(task, MultiHypothesis):
        out["member_score"] = [extra[f"member_score_{m}"] / n for m in members]
    if isinstance(task, Segmentation):
        out["class_iou"] = class_iou(sums["confusion"])
        out["oracle_class_iou"] = class_iou(sums["oracle_confusion"])
    return out


def _regression_arrays(task: Regression, outputs: torch.Tensor, target: torch.Tensor) -> dict:
    mean, var = task.moments(outputs.detach().to(torch.float64))  # (M, B, D)
    if task.head == "gaussian":
        lower = mixture_quantile(mean, var, (1 - INTERVAL) / 2)
        upper = mixture_quantile(mean, var, (1 + INTERVAL) / 2)
    else:  # points: no predictive distribution, the members' spread
        lower, upper = mean.min(dim=0).values, mean.max(dim=0).values
    y = target.reshape(target.shape[0], task.dim).to(torch.float64)
    return {"target": y, "mean": mean.mean(dim=0), "lower": lower, "upper": upper}


def _hypothesis_arrays(task: MultiHypothesis, outputs: torch.Tensor, target: torch.Tensor, inputs) -> dict:
    one_feature = isinstance(inputs, torch.Tensor) and tuple(inputs.shape[1:]) in ((), (1,))
    if task.dim != 1 or not one_feature:
        return {}
    combined = task.combine(outputs.detach().to(torch.float64))
    return {
        "x": inputs.reshape(-1).to(torch.float64),
        "target": target.reshape(-1).to(torch.float64),
        "points": combined.points[..., 0],
        "weights": combined.weights,
    }


def _arrays(task: Task, outputs: torch.Tensor, target: torch.Tensor, inputs) -> dict[str, torch.Tensor]:
    if isinstance(task, Regression):
        arrays = _regression_arrays(task, outputs, target)
    elif isinstance(task, MultiHypothesis):
        arrays = _hypothesis_arrays(task, outputs, target, inputs)
    else:
        arrays = {}
    return {k: v.detach().cpu() for k, v in arrays.items()}


def _cat(key: str, chunks: list[torch.Tensor], keep: int) -> torch.Tensor:
    """One array's batches joined, its first ``keep`` examples: per-member arrays are ``(M, N)``, examples on
    the last axis; the others have them first."""
    if key in ("points", "weights"):
        return torch.cat(chunks, dim=1)[:, :keep]
    return torch.cat(chunks, dim=0)[:keep]


class TaskEvaluation:
    """A task's metrics plus the report's (see the module docstring), fed batch by batch: ``update(outputs
    (M, B, ...), target, inputs)``, then ``compute() -> (metrics, arrays)``. The task's own metrics are
    exactly those of ``TaskMetrics`` (and of ``task.metrics`` on the concatenated set); as there, outputs
    holding a NaN or inf are counted per member over every batch and refused by ``compute``
    (:class:`~mheads.ensemble.metrics.NonFiniteOutputs`)."""

    def __init__(self, task: Task, keep: int = MAX_POINTS) -> None:
        self.task, self.keep = task, keep
        self._sums: dict[str, Any] = {}
        self._extra: dict[str, Any] = {}
        self._arrays: dict[str, list[torch.Tensor]] = {}
        self._n = 0
        self._non_finite = NonFiniteCounts(task)

    @torch.no_grad()
    def update(self, outputs: torch.Tensor, target: torch.Tensor, inputs: Any = None) -> None:
        if self._non_finite.add(outputs):
            self._n += int(outputs.shape[1])
            return
        reduce_terms(self.task.metric_terms(outputs, target), self._sums)
        reduce_terms(extra_terms(self.task, outputs, target), self._extra)
        if self._n < self.keep:
            for key, value in _arrays(self.task, outputs, target, inputs).items():
                self._arrays.setdefault(key, []).append(value)
        self._n += int(outputs.shape[1])

    def compute(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        if self._n == 0:
            raise ValueError("TaskEvaluation.compute: no batch was added")
        self._non_finite.check(self._n)
        sums = {k: (v.value() if isinstance(v, ExactSum) else v) for k, v in self._sums.items()}
        extra = {k: (v.value() if isinstance(v, ExactSum) else v) for k, v in self._extra.items()}
        metrics = self.task.finish_metrics(sums, self._n)
        metrics.update(_finish_extra(self.task, extra, sums, self._n))
        return metrics, {k: _cat(k, v, self.keep) for k, v in self._arrays.items()}


@torch.no_grad()
def evaluate_task(
    model, data, task: Task, batch_size: int, split: str = "test"
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``model``'s metrics on ``data``'s ``split`` (``{"task": name, ...}``, those of
    :func:`mheads.train.evaluate.task_metrics` plus the report's) and the figures' arrays."""
    was_training = model.training
    model.eval()
    acc = TaskEvaluation(task)
    try:
        for x, y in data.eval_batches(split, batch_size):
            acc.update(model(x).float(), y, x)
    finally:
        model.train(was_training)
    metrics, arrays = acc.compute()
    return {"task": task.name, **metrics}, arrays
