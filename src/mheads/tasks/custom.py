"""A user's task from Python: any per-example loss `loss_fn(output (B, ...), target) -> (B,)` is enough.

`custom_task(loss_fn, metric=None, combine=None, head_width=None, name="custom")`. Member losses `(M, B)` are
`loss_fn` applied to each member's output `(B, ...)`; `combine` defaults to the members' mean output
`(B, ...)`; "averaged" is `loss_fn` of the combined output; the oracle's error is the member loss itself.
`metric(combined (B, ...), target) -> (B,)`, optional, is reported averaged over examples.
Metrics: `mean_member_loss`, `oracle_loss` (per example the lowest member loss), `averaged_loss` and `metric`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from mheads.tasks.base import Task, Terms, check_outputs

__all__ = ["CustomTask", "custom_task"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _per_example(value: Any, batch: int, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != (batch,) or not value.is_floating_point():
        got = (
            f"{value.dtype} of shape {tuple(value.shape)}"
            if isinstance(value, torch.Tensor)
            else type(value).__name__
        )
        raise ValueError(
            f"{what}: returned {got}; expected a floating tensor of per-example values (B,) = ({batch},)"
        )
    return value


@dataclass(frozen=True)
class CustomTask(Task):
    """See the module docstring."""

    loss_fn: LossFn
    metric_fn: LossFn | None = None
    combine_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    width: int | None = None
    task_name: str = "custom"
    averaged: ClassVar[tuple[str, ...]] = ("averaged",)

    def __post_init__(self) -> None:
        callables = (("loss_fn", self.loss_fn), ("metric", self.metric_fn), ("combine", self.combine_fn))
        for field, fn in callables:
            if fn is not None and not callable(fn):
                raise ValueError(f"{field}: got {type(fn).__name__}; expected a callable")

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.task_name

    def head_width(self) -> int:
        if self.width is None:
            raise ValueError(f"head_width: task {self.task_name!r} was built without one")
        return self.width

    def check(self, outputs: torch.Tensor, target: torch.Tensor) -> None:
        check_outputs(outputs, target, min_ndim=2)

    def member_losses(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.check(outputs, target)
        batch = outputs.shape[1]
        return torch.stack([_per_example(self.loss_fn(out, target), batch, "loss_fn") for out in outputs])

    def combine(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.mean(dim=0) if self.combine_fn is None else self.combine_fn(outputs)

    def combined_loss(self, name: str, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if name != "averaged":
            return super().combined_loss(name, outputs, target)
        return _per_example(self.loss_fn(self.combine(outputs), target), outputs.shape[1], "loss_fn")

    def metric_terms(self, outputs: torch.Tensor, target: torch.Tensor, **extra: Any) -> Terms:
        with torch.no_grad():
            losses = self.member_losses(outputs, target).to(torch.float64)
            terms = {
                "mean_member_loss": losses.mean(dim=0),
                "oracle_loss": losses.min(dim=0).values,
                "averaged_loss": self.combined_loss("averaged", outputs, target).to(torch.float64),
            }
            if self.metric_fn is not None:
                value = self.metric_fn(self.combine(outputs), target)
                terms["metric"] = _per_example(value, outputs.shape[1], "metric").to(torch.float64)
        return terms

    def finish_metrics(self, sums: dict[str, Any], num_examples: int) -> dict[str, Any]:
        return {"num_examples": num_examples, **{k: v / num_examples for k, v in sums.items()}}


def custom_task(
    loss_fn: LossFn,
    *,
    metric: LossFn | None = None,
    combine: Callable[[torch.Tensor], torch.Tensor] | None = None,
    head_width: int | None = None,
    name: str = "custom",
) -> CustomTask:
    """A task from a per-example loss; see the module docstring."""
    if not callable(loss_fn):
        raise ValueError(
            f"loss_fn: got {type(loss_fn).__name__}; expected a callable (output, target) -> (B,)"
        )
    return CustomTask(loss_fn, metric, combine, head_width, name)
