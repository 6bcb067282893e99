"""The task interface: what a member's output means (issue 32; sMCL, Lee et al. NeurIPS 2016: MCL needs only a
per-example loss).

A `Task` turns member outputs `(M, B, ...)` and a batch's targets into:

- `member_losses(outputs, target) -> (M, B)`: each member's per-example loss, differentiable. Every ensemble
  loss (`Task.loss`, over `mheads.ensemble.losses.ensemble_loss`) reads only these, so a new task needs no
  loss code of its own.
- `combine(outputs)`: the ensemble's prediction, the one place per task where members are combined.
- `combined_loss(name, outputs, target) -> (B,)`: the losses of that combined prediction the task defines
  (its names are `averaged`: score and probability averaging for classification, the loss of the mean
  prediction for regression, ...).
- `penalty(outputs, target) -> (M, B) | None`: confident MCL's non-winner term, `KL(U || p_m)` where the
  output is categorical; None where confident MCL is not defined.
- `score_logits(outputs) -> (M, B) | None`: the scoring heads' logits when the outputs carry them.
- `errors(outputs, target) -> (M, B)` float64: the error under which the oracle picks its member (default:
  the member losses); `oracle(outputs, target) -> Oracle(member (B,), error (B,))` (member -1 where no
  member has an error).
- `metric_terms(outputs, target, **extra)` and `finish_metrics(sums, num_examples)`: metrics as additive
  terms, so that `metrics(outputs, target)` on a whole set and `TaskMetrics` fed batch by batch agree exactly.
- `head_width()`: how many numbers a member outputs per example (per pixel for dense tasks); `build_head(F)`
  the layer that puts them on top of any base's F features (`mheads.tasks.heads`; not `head`, which is
  `Regression`'s point or Gaussian setting).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from mheads.ensemble.exact_sum import ExactSum
from mheads.ensemble.losses import (
    ENSEMBLE_LOSS_NAMES,
    ENSEMBLE_LOSSES,
    LOSS_ALIASES,
    LossResult,
    check_loss_params,
    ensemble_loss,
)
from mheads.ensemble.metrics import check_finite_counts
from mheads.tasks.heads import HeadLayout

__all__ = [
    "NO_MEMBER",
    "NonFiniteCounts",
    "Oracle",
    "Task",
    "TaskMetrics",
    "Terms",
    "check_outputs",
    "check_vector_target",
    "first_argmin",
    "non_finite_members",
    "reduce_terms",
]


Terms = dict[str, torch.Tensor]  # metric terms: float (B,) per-example values or integer counts

# the end of a task's NonFiniteOutputs (mheads.ensemble.metrics): its outputs need not be logits
OUTPUTS_WHY = "NaN or inf outputs have no error to score; expected finite outputs"


NO_MEMBER = -1  # Oracle.member where no member has an error (mheads predict's null)


class Oracle(NamedTuple):
    """Per example, the best member (`member: (B,)` int64, ties to the lowest index) and its error
    (`error: (B,)` float64) under the task's `errors`. Where no member has an error (every member's output
    non-finite, or every error NaN) `member` is `NO_MEMBER` (-1) and `error` NaN; `found` is False there.
    Select with `found` before indexing: `outputs[member, arange(B)]` would wrap -1 to the last member."""

    member: torch.Tensor
    error: torch.Tensor

    @property
    def found(self) -> torch.Tensor:
        """`(B,)` bool: the example has an oracle member (`member >= 0`)."""
        return self.member >= 0


def check_vector_target(target: torch.Tensor, dim: int) -> None:
    """`target`: a floating tensor `(B, dim)` (or `(B,)` when `dim` is 1), the target of a regression or of
    multiple hypotheses."""
    allowed = [(dim,)] + ([()] if dim == 1 else [])
    if not target.is_floating_point() or tuple(target.shape[1:]) not in allowed:
        raise ValueError(
            f"target: got {target.dtype} of shape {tuple(target.shape)}; expected a "
            f"floating tensor (B, {dim})" + (" or (B,)" if dim == 1 else "")
        )


def check_outputs(outputs: Any, target: Any, min_ndim: int = 3, name: str = "outputs") -> None:
    """`outputs`: a floating tensor `(M, B, ...)` with at least `min_ndim` axes; `target`: a tensor whose
    first axis is B, on the same device."""
    if not isinstance(outputs, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"{name} and target must be torch.Tensors, got {type(outputs).__name__} and "
            f"{type(target).__name__}"
        )
    if outputs.ndim < min_ndim or not outputs.is_floating_point() or min(outputs.shape) < 1:
        raise ValueError(
            f"{name}: got {outputs.dtype} of shape {tuple(outputs.shape)}; expected a floating "
            f"tensor (M, B, ...) with at least {min_ndim} axes, none empty"
        )
    if target.ndim < 1 or target.shape[0] != outputs.shape[1]:
        raise ValueError(
            f"target: got shape {tuple(target.shape)}; expected its first axis to be the batch, "
            f"B = {outputs.shape[1]}"
        )
    if target.device != outputs.device:
        raise ValueError(f"target: on {target.device}; expected the {name}' device {outputs.device}")


def non_finite_members(outputs: torch.Tensor) -> torch.Tensor:
    """`(M, B, ...)` -> `(M, B)` bool: the member's output on the example holds a NaN or inf."""
    finite = torch.isfinite(outputs.detach())
    return ~(finite.flatten(2).all(dim=-1) if finite.ndim > 2 else finite)


class NonFiniteCounts:
    """Per member, the examples whose outputs hold a NaN or inf (`task.non_finite`: classification's logits
    may hold a -inf class mask), counted over every batch (`add`) and refused by `check` (`NonFiniteOutputs`,
    naming each member and on how many examples of the whole set): a NaN error can win the oracle
    (segmentation's argmax of NaN is a class) or leave a metric NaN, an inf one leave the oracle's metric
    looking fine."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.counts: list[int] = []

    def add(self, outputs: Any) -> bool:
        """Count one batch `(M, B, ...)`; True when it holds any (its metric terms are then not computed).
        Anything but a floating tensor of 2 or more axes is left to the task's own checks."""
        if not isinstance(outputs, torch.Tensor) or outputs.ndim < 2 or not outputs.is_floating_point():
            return False
        counts = self.task.non_finite(outputs).sum(dim=1).tolist()
        self.counts = [a + b for a, b in zip(self.counts, counts)] if self.counts else counts
        return any(counts)

    def check(self, num_examples: int) -> None:
        check_finite_counts(self.counts, num_examples, self.task.non_finite_why)


def first_argmin(values: torch.Tensor) -> torch.Tensor:
    """`(M, B)` -> `(B,)` the lowest member index attaining each column's minimum (NaN ranks last, after
    +inf; 0 for a column of NaN)."""
    nan = torch.isnan(values)
    values = torch.where(nan, torch.inf, values)
    best = values.min(dim=0, keepdim=True).values
    return ((values == best) & ~nan).to(torch.int64).argmax(dim=0)


def reduce_terms(terms: dict[str, torch.Tensor], into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add one batch's metric terms into running sums: a float tensor `(B,)` holds per-example values (summed
    exactly with `ExactSum`), an integer tensor of any shape holds counts (added)."""
    into = {} if into is None else into
    for key, value in terms.items():
        value = value.detach().cpu()
        if value.is_floating_point():
            if value.ndim != 1:
                raise ValueError(
                    f"metric term {key!r}: got a float tensor of shape {tuple(value.shape)}; "
                    "expected per-example values (B,)"
                )
            into.setdefault(key, ExactSum()).add(value.to(torch.float64).tolist())
        else:
            into[key] = value.to(torch.int64) + into[key] if key in into else value.to(torch.int64)
    return into


def _sums(reduced: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.value() if isinstance(v, ExactSum) else v) for k, v in reduced.items()}


class Task:
    """Base class of the tasks; see the module docstring. Subclasses are frozen dataclasses of their settings
    and override `member_losses`, `combine` and the metric methods; the rest has generic defaults."""

    # Class-level constants (a subclass may compute them from its settings with a property instead).
    name: ClassVar[str] = "task"
    averaged: ClassVar[tuple[str, ...]] = ()  # names of this task's losses of the combined prediction
    default_loss: ClassVar[str] = "independent"  # the loss a task's users start from

    head_layer: ClassVar[str] = "linear"  # the layer of `build_head`: "linear", or "conv" (1x1, dense tasks)
    non_finite_why: ClassVar[str] = OUTPUTS_WHY  # the end of `NonFiniteOutputs`' message for this task

    # ------------------------------------------------------------------ what a subclass defines
    def head_width(self) -> int:
        raise NotImplementedError(f"task {self.name!r} does not say its head width")

    def build_head(self, in_features: int) -> nn.Module:
        """This task's head on a base's features: `Linear(F, head_width())` on `(B, F)` (a 1x1
        `Conv2d(F, C)` on `(B, F, H, W)` where `head_layer` is "conv"), drawn from the global generator (the
        caller seeds it); see `mheads.tasks.heads`. A task without a head width raises a `ValueError`."""
        return self.head_layout(in_features).build()

    def head_layout(self, in_features: int) -> HeadLayout:
        """What a run records of `build_head(in_features)` (`mheads.tasks.heads.HeadLayout`)."""
        try:
            width = self.head_width()
        except (NotImplementedError, ValueError) as err:
            raise ValueError(
                f"head: task {self.name!r} has no head width ({err}); give it one (custom_task(..., "
                "head_width=W), a built-in task's num_classes) or give a base that outputs its predictions"
            ) from None
        return HeadLayout(self.head_layer, in_features, width)

    def check(self, outputs: torch.Tensor, target: torch.Tensor) -> None:
        check_outputs(outputs, target)

    def member_losses(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def combine(self, outputs: torch.Tensor) -> Any:
        raise NotImplementedError

    def combined_loss(self, name: str, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise ValueError(f"loss: got {name!r}; task {self.name!r} defines no loss of its combined prediction")

    def penalty(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        return None

    def score_logits(self, outputs: torch.Tensor) -> torch.Tensor | None:
        return None

    def errors(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.member_losses(outputs, target).to(torch.float64)

    def metric_terms(self, outputs: torch.Tensor, target: torch.Tensor, **extra: Any) -> Terms:
        raise NotImplementedError

    def finish_metrics(self, sums: dict[str, Any], num_examples: int) -> dict[str, Any]:
        raise NotImplementedError

    # ------------------------------------------------------------------ generic
    def loss_names(self) -> tuple[str, ...]:
        """Every loss name `loss` accepts for this task."""
        names = [n for n in ENSEMBLE_LOSS_NAMES if not (ENSEMBLE_LOSSES[n].penalty and not self.has_penalty)]
        return tuple(names) + tuple(LOSS_ALIASES) + self.averaged

    @property
    def has_penalty(self) -> bool:
        """Whether confident MCL ("cmcl") is defined: the output is categorical."""
        return type(self).penalty is not Task.penalty

    def non_finite(self, outputs: torch.Tensor) -> torch.Tensor:
        """`(M, B, ...)` -> `(M, B)` bool: the member's output on the example has no error to score (here: it
        holds a NaN or inf; classification allows a -inf class mask)."""
        return non_finite_members(outputs)

    def oracle(self, outputs: torch.Tensor, target: torch.Tensor) -> Oracle:
        """Per example the member with the lowest `errors` (ties to the lowest index) and that error. A member
        whose output holds a NaN or inf never wins (its error counts as NaN: an argmax of NaN can be the
        target's class); an example on which no member has an error gets member `NO_MEMBER` (-1) and error
        NaN (`Oracle.found` False; `mheads predict` names member and error null there)."""
        self.check(outputs, target)
        errors = self.errors(outputs, target)
        errors = torch.where(self.non_finite(outputs).to(errors.device), torch.nan, errors)
        member = first_argmin(errors)
        error = errors.gather(0, member.unsqueeze(0)).squeeze(0)
        return Oracle(torch.where(torch.isnan(error), NO_MEMBER, member), error)

    def loss(
        self,
        name: str,
        outputs: torch.Tensor,
        target: torch.Tensor,
        *,
        weights: torch.Tensor | None = None,
        score_logits: torch.Tensor | None = None,
        **params: Any,
    ) -> LossResult:
        """The ensemble loss `name` on this task: one of `ENSEMBLE_LOSS_NAMES` ("cmcl" where `penalty` is
        defined) over `member_losses`, or one of `averaged` (a loss of `combine`'s prediction; no `weights`).
        `params`: `ensemble_loss`'s k, mix, beta, epsilon, temperature, score_weight, generator. A scored loss
        reads `score_logits` from the outputs when they carry them."""
        self.check(outputs, target)
        if name in self.averaged:
            if weights is not None:
                raise ValueError(
                    f"loss {name!r} averages the members and takes no per-member weights, got some"
                )
            check_loss_params(outputs.shape[0], **params)
            with torch.no_grad():
                own = self.member_losses(outputs, target).mean(dim=1)
            return LossResult(self.combined_loss(name, outputs, target).mean(), own, None)
        spec = ENSEMBLE_LOSSES.get(LOSS_ALIASES.get(name, name))
        if spec is None or (spec.penalty and not self.has_penalty):
            why = " (confident MCL needs a categorical output)" if spec is not None else ""
            raise ValueError(
                f"loss: got {name!r}; expected one of {', '.join(self.loss_names())} for task "
                f"{self.name!r}{why}"
            )
        nll = self.member_losses(outputs, target)
        penalty = self.penalty(outputs, target) if spec.penalty else None
        if spec.scores and score_logits is None:
            score_logits = self.score_logits(outputs)
        return ensemble_loss(name, nll, penalty=penalty, score_logits=score_logits, weights=weights, **params)

    def metrics(self, outputs: torch.Tensor, target: torch.Tensor, **extra: Any) -> dict[str, Any]:
        """The task's metrics on one batch or a whole collected set (JSON-ready numbers); outputs holding a
        NaN or inf are refused (`NonFiniteCounts`)."""
        bad = NonFiniteCounts(self)
        if bad.add(outputs):
            bad.check(int(outputs.shape[1]))
        reduced = reduce_terms(self.metric_terms(outputs, target, **extra))
        return self.finish_metrics(_sums(reduced), int(outputs.shape[1]))

    @staticmethod
    def from_loss(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], **kwargs: Any) -> Task:
        """A task from a per-example loss `(output (B, ...), target) -> (B,)`: `mheads.tasks.custom_task`."""
        from mheads.tasks.custom import custom_task

        return custom_task(loss_fn, **kwargs)


class TaskMetrics:
    """A task's metrics fed batch by batch: `update(outputs, target, **extra)`, then `compute()` returns what
    `task.metrics` returns on the concatenated set (exact sums: equal whatever the batching, as long as each
    example's terms do not depend on its batch). Outputs holding a NaN or inf are counted per member over
    every batch and refused by `compute` (`NonFiniteCounts`)."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.reset()

    def reset(self) -> None:
        self._sums: dict[str, Any] = {}
        self._n = 0
        self._non_finite = NonFiniteCounts(self.task)

    @torch.no_grad()
    def update(self, outputs: torch.Tensor, target: torch.Tensor, **extra: Any) -> None:
        if not self._non_finite.add(outputs):
            reduce_terms(self.task.metric_terms(outputs, target, **extra), self._sums)
        self._n += int(outputs.shape[1])

    def compute(self) -> dict[str, Any]:
        if self._n == 0:
            raise ValueError("TaskMetrics.compute: no batch was added")
        self._non_finite.check(self._n)
        return self.task.finish_metrics(_sums(self._sums), self._n)
