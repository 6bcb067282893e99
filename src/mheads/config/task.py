"""The ``task:`` section of a run's config (issue 32): which :mod:`mheads.tasks` task its members' outputs
mean, with the task's options, and the :class:`~mheads.tasks.Task` it builds.

A built-in task given to ``mheads.fit`` as an object is recorded here by its name and options
(:func:`task_config_of`), so a run folder stays data; a user's task (``custom_task``) is recorded as
``name: python`` and reopened only from Python, with the task passed again (as a Python model is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mheads.core.checks import check_choice, check_int, check_number
from mheads.ensemble.losses import ENSEMBLE_LOSS_NAMES, ENSEMBLE_LOSSES, LOSS_ALIASES, LOSSES, LossSpec
from mheads.tasks import (
    Classification,
    MultiHypothesis,
    Regression,
    Segmentation,
    Task,
    classification,
    multi_hypothesis,
    regression,
    segmentation,
)
from mheads.tasks.classification import CE_NAMES

__all__ = [
    "PYTHON_TASK",
    "TASK_NAMES",
    "TaskConfig",
    "build_task",
    "task_config_of",
    "task_loss_name",
    "task_loss_names",
    "task_loss_spec",
]

PYTHON_TASK = "python"  # a Task object given to mheads.fit that is not built in: reopened from Python only
TASK_NAMES = ("classification", "regression", "multi_hypothesis", "segmentation", PYTHON_TASK)


class TaskConfigError(ValueError):
    """Raised by :meth:`TaskConfig.validate` (the schema turns it into its ``ConfigError``)."""


@dataclass
class TaskConfig:
    """The ``task:`` section: what a member's output means (mheads.tasks; docs/tasks.md), with the task's
    options. Each option is read only by the tasks it names; the others ignore it."""

    name: str = "classification"
    """classification (logits (M, B, C), class targets; its classes come from the data) | regression |
    multi_hypothesis | segmentation | python (a Task object given to mheads.fit that is not built in; the
    run reopens from Python with the task passed again)."""
    dim: int | None = None
    """regression, multi_hypothesis: D, the target's dimension, an integer >= 1 (null: from the training
    targets)."""
    num_classes: int | None = None
    """segmentation: C, the classes, an integer >= 1 (null: from the masks' largest class)."""
    ignore_index: int = 255
    """segmentation: the value of unlabelled pixels (they count nowhere), an integer."""
    head: str = "point"
    """regression: point (D outputs per member) | gaussian (a mean and a variance per dimension: 2D outputs,
    trained by Gaussian NLL; the ensemble's variance splits into aleatoric and epistemic)."""
    point_loss: str = "mse"
    """regression, point heads: the member loss, mse | l1."""
    variance: str = "softplus"
    """regression, gaussian heads: the raw output to variance, softplus | exp."""
    min_variance: float = 1e-6
    """regression, gaussian heads: added to every variance, a number > 0."""
    levels: list[float] = field(default_factory=lambda: [0.5, 0.8, 0.9, 0.95])
    """regression, gaussian heads: the central-interval probabilities whose coverage the metrics report, a
    non-empty list of numbers in (0, 1]."""
    distance: str = "sq"
    """multi_hypothesis: the member loss, sq (squared Euclidean) | l2."""
    p: float = 1.0
    """multi_hypothesis: the order of the earth mover's distance (where samples are given), a number >=
    1."""
    projections: int = 128
    """multi_hypothesis, D > 1: the directions of the sliced earth mover's distance, an integer in
    1..1048576."""
    seed: int = 0
    """multi_hypothesis: the seed of those directions, an integer >= 0."""

    def validate(self, p: str = "task") -> None:
        check_choice(f"{p}.name", self.name, TASK_NAMES, error=TaskConfigError)
        for name in ("dim", "num_classes"):
            if getattr(self, name) is not None:
                check_int(f"{p}.{name}", getattr(self, name), 1, 2**31 - 1, error=TaskConfigError)
        check_int(f"{p}.ignore_index", self.ignore_index, error=TaskConfigError)
        check_choice(f"{p}.head", self.head, ("point", "gaussian"), error=TaskConfigError)
        check_choice(f"{p}.point_loss", self.point_loss, ("mse", "l1"), error=TaskConfigError)
        check_choice(f"{p}.variance", self.variance, ("softplus", "exp"), error=TaskConfigError)
        check_number(f"{p}.min_variance", self.min_variance, 0.0, strict_low=True, error=TaskConfigError)
        if not isinstance(self.levels, (list, tuple)) or not self.levels:
            raise TaskConfigError(
                f"{p}.levels: got {self.levels!r}; expected a non-empty list of probabilities in (0, 1]"
            )
        for level in self.levels:
            check_number(f"{p}.levels[]", level, 0.0, 1.0, strict_low=True, error=TaskConfigError)
        check_choice(f"{p}.distance", self.distance, ("sq", "l2"), error=TaskConfigError)
        check_number(f"{p}.p", self.p, 1.0, error=TaskConfigError)
        check_int(f"{p}.projections", self.projections, 1, 2**20, error=TaskConfigError)
        check_int(f"{p}.seed", self.seed, 0, error=TaskConfigError)

    @property
    def is_classification(self) -> bool:
        return self.name == "classification"

    def options(self) -> dict[str, Any]:
        """The fields that mean something for this task (what run.json's meta records beside the name)."""
        keep = {
            "classification": (),
            "regression": ("dim", "head", "point_loss", "variance", "min_variance", "levels"),
            "multi_hypothesis": ("dim", "distance", "p", "projections", "seed"),
            "segmentation": ("num_classes", "ignore_index"),
            PYTHON_TASK: (),
        }[self.name]
        return {k: (list(v) if isinstance(v := getattr(self, k), tuple) else v) for k in keep}


def build_task(
    tc: TaskConfig, *, dim: int | None = None, num_classes: int | None = None, label_smoothing: float = 0.0
) -> Task:
    """The built-in :class:`Task` of ``tc``; ``dim`` and ``num_classes`` (from the data) fill the fields
    left null. ``python`` has no built-in task (the caller holds the user's object)."""
    if tc.name == "classification":
        return classification(num_classes, label_smoothing=label_smoothing)
    if tc.name == "regression":
        return regression(
            tc.dim or dim or 1,
            head=tc.head,
            loss=tc.point_loss,
            variance=tc.variance,
            min_variance=tc.min_variance,
            levels=tuple(tc.levels),
        )
    if tc.name == "multi_hypothesis":
        return multi_hypothesis(
            tc.dim or dim or 1, distance=tc.distance, p=tc.p, projections=tc.projections, seed=tc.seed
        )
    if tc.name == "segmentation":
        return segmentation(tc.num_classes or num_classes, ignore_index=tc.ignore_index)
    raise TaskConfigError(
        f"task.name: got {tc.name!r}; a user's task is not rebuilt from a config: pass the "
        "Task object (task= of mheads.fit / evaluate / predict)"
    )


def task_config_of(task: Task) -> TaskConfig:
    """The config section recording ``task``: a built-in task by name and options, any other as ``python``."""
    if isinstance(task, Classification):
        return TaskConfig("classification")
    if isinstance(task, Regression):
        return TaskConfig(
            "regression",
            dim=task.dim,
            head=task.head,
            point_loss=task.loss_kind,
            variance=task.variance,
            min_variance=task.min_variance,
            levels=list(task.levels),
        )
    if isinstance(task, MultiHypothesis):
        return TaskConfig(
            "multi_hypothesis",
            dim=task.dim,
            distance=task.distance,
            p=task.p,
            projections=task.projections,
            seed=task.seed,
        )
    if isinstance(task, Segmentation):
        return TaskConfig("segmentation", num_classes=task.num_classes, ignore_index=task.ignore_index)
    return TaskConfig(PYTHON_TASK)


def task_loss_names(tc: TaskConfig) -> tuple[str, ...]:
    """Every ``loss.name`` the task takes: classification's registry (``LOSSES``) with "independent" (every
    other task's name of "independent_ce", the same loss), or the ensemble losses (with "independent_ce" for
    "independent") plus the task's losses of its combined prediction."""
    if tc.is_classification:
        return classification().loss_names()
    if tc.name == PYTHON_TASK:  # its penalty and combined losses are the object's: Task.loss checks them
        return ENSEMBLE_LOSS_NAMES + tuple(LOSS_ALIASES) + ("averaged", "mixture_nll")
    task = build_task(tc, dim=tc.dim or 1, num_classes=tc.num_classes or 2)
    return tuple(task.loss_names())


def task_loss_name(tc: TaskConfig, name: str) -> str:
    """The name the task's loss registry gives ``loss.name``: classification's "independent_ce" for
    "independent" (the same per-example member losses ``(M, B)`` and the same loss, bit for bit); any other
    name as it is."""
    return CE_NAMES.get(name, name) if tc.is_classification else name


def task_loss_spec(tc: TaskConfig, name: str) -> LossSpec:
    """The :class:`LossSpec` of ``loss.name`` under the task (a loss of the combined prediction: an
    ``average`` spec)."""
    if tc.is_classification:
        return LOSSES[task_loss_name(tc, name)]
    spec = ENSEMBLE_LOSSES.get(LOSS_ALIASES.get(name, name))
    return spec if spec is not None else LossSpec(average=lambda *a: None)
