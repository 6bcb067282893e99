"""The oracle of ``mheads predict`` where the predicted data carries targets (a table holding the run's target
columns, a Dataset of ``(input, target)`` pairs): per record the member closest to its target and that
member's error, the winner that winner-takes-all training (MCL) picks, from the task's own ``Task.oracle``.

Fields added to each record (none without targets):

- ``target``: regression and multi_hypothesis its D values, classification its class name (none for
  segmentation and a user's task, whose targets are masks or anything);
- ``oracle``: ``{"member": m, "error": e}``, the member with the lowest ``task.errors`` (ties to the lowest
  index) and that error: regression the squared error of its mean averaged over D, multi_hypothesis the
  Euclidean distance of its hypothesis, segmentation its pixel error rate, a user's task its loss;
  classification ``{"member": m, "correct": c}``: ``c`` whether any member's top class is the target, ``m``
  the first member whose is (None when none is).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mheads.data.errors import DataError
from mheads.tasks import Classification, MultiHypothesis, Regression, Task

__all__ = ["oracle_fields", "pair_targets"]

_ALONE = "or predict the inputs alone (a tensor, or a Dataset of inputs) for records without an oracle"


def pair_targets(targets: list[Any]) -> torch.Tensor:
    """The targets of a Dataset's ``(input, target)`` pairs as one tensor ``(N, ...)``."""
    try:
        return torch.stack([torch.as_tensor(t) for t in targets])
    except (TypeError, RuntimeError, ValueError) as err:
        raise DataError(
            f"inputs: the targets of the (input, target) pairs do not stack into one tensor "
            f"({str(err).splitlines()[0]}); expected a number or a tensor of one shape per pair, {_ALONE}"
        ) from None


def oracle_fields(
    task: Task, outputs: torch.Tensor, targets: torch.Tensor, classes: list[str] | None = None
) -> list[dict]:
    """Per example of ``outputs: (M, B, ...)`` and its ``targets: (B, ...)``, the ``target`` and ``oracle``
    fields (see the module docstring); ``classes`` names a classification run's classes."""
    targets = targets.to(outputs.device)
    try:
        best = task.oracle(outputs, targets)
    except (TypeError, ValueError, RuntimeError) as err:  # RuntimeError: a user's loss of mismatched shapes
        raise DataError(
            f"{str(err).splitlines()[0]} (the targets given with the inputs, for a {task.name} run); give "
            f"the targets the run trained on, {_ALONE}"
        ) from None
    member, error = best.member.tolist(), best.error.tolist()
    if isinstance(task, Classification):
        names = _class_names(targets, classes)
        return [
            {"target": names[i], "oracle": {"member": member[i] if e == 0 else None, "correct": e == 0}}
            for i, e in enumerate(error)
        ]
    vector = isinstance(task, (Regression, MultiHypothesis))
    rows = targets.detach().float().reshape(len(error), -1).tolist() if vector else None
    return [
        ({"target": [_r(v) for v in rows[i]]} if rows is not None else {})
        | {"oracle": {"member": member[i], "error": _r(e)}}
        for i, e in enumerate(error)
    ]


def _class_names(targets: torch.Tensor, classes: list[str] | None) -> list[Any]:
    """Each target class's name (its index where the run names no classes)."""
    labels = targets.reshape(-1).tolist()
    return [classes[t] if classes is not None and 0 <= t < len(classes) else t for t in labels]


def _r(x: float) -> float:
    """6 significant digits, as the records' other numbers."""
    return float(f"{x:.6g}") if math.isfinite(x) else x
