"""The oracle of ``mheads predict`` where the predicted data carries targets (a table holding the run's target
columns, a Dataset of ``(input, target)`` pairs): per record the member closest to its target and that
member's error, the winner that winner-takes-all training (MCL) picks, from the task's own ``Task.oracle``.

Fields added to each record (none without targets):

- ``target``: regression and multi_hypothesis its D values, classification its class name (none for
  segmentation and a user's task, whose targets are masks or anything);
- ``oracle``: ``{"member": m, "error": e}``, the member with the lowest ``task.errors`` (ties to the lowest
  index) and that error: regression the squared error of its mean averaged over D, multi_hypothesis the
  Euclidean distance of its hypothesis, segmentation its pixel error rate, a user's task its loss; both
  None (JSON null, an empty CSV cell) on a record where no member has an error (``Task.oracle``'s member
  -1: no member's output is finite, or every error is NaN);
  classification ``{"member": m, "correct": c}``: ``c`` whether any member's top class is the target, ``m``
  the first member whose is (None when none is).

Predicting never needs targets: targets that do not fit the run (labels of classes it never learnt, text
labels, targets of another shape or type) raise :class:`UnfitTargets`, on which the callers predict every
record of the call without ``target`` and ``oracle`` and say why in one ``UserWarning`` (:func:`leave_out`),
which ``mheads predict`` prints as one line on stderr.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from mheads.data.errors import DataError
from mheads.tasks import Classification, MultiHypothesis, Regression, Task

__all__ = ["NO_ORACLE", "UnfitTargets", "leave_out", "oracle_fields", "pair_targets", "without_oracle"]

NO_ORACLE = "no oracle in the records"
"""How :func:`leave_out`'s warning begins: ``warnings.filterwarnings("ignore", message=NO_ORACLE)``
silences it."""


class UnfitTargets(DataError):
    """Targets given with the inputs that the run's oracle cannot read; the inputs are predicted alone."""


def leave_out(err: Exception) -> None:
    """A ``UserWarning`` saying why the records name no oracle (their inputs are predicted all the same): a
    caller of ``mheads.predict`` filters or records it as any warning; ``mheads predict`` prints it as one
    line on stderr."""
    warnings.warn(f"{NO_ORACLE}: {err}; the inputs are predicted alone", UserWarning, stacklevel=2)


def without_oracle(records: list[dict]) -> list[dict]:
    """``records`` without the ``target`` and ``oracle`` fields (a later batch's targets did not fit)."""
    return [{k: v for k, v in r.items() if k not in ("target", "oracle")} for r in records]


def pair_targets(targets: list[Any], first: int = 0) -> torch.Tensor:
    """The targets of a Dataset's ``(input, target)`` pairs (``first``: the index of the first) as one
    tensor ``(N, ...)``; ``UnfitTargets`` names the first that is not a number or a tensor of the first's
    shape."""
    tensors = []
    for i, t in enumerate(targets):
        try:
            tensors.append(torch.as_tensor(t))
        except (TypeError, RuntimeError, ValueError):
            raise UnfitTargets(
                f"inputs[{first + i}]: target {_shown(t)}; expected a number or a tensor"
            ) from None
        if tensors[-1].shape != tensors[0].shape:
            raise UnfitTargets(
                f"inputs[{first + i}]: a target of shape {tuple(tensors[-1].shape)}; expected the shape of "
                f"inputs[{first}]'s, {tuple(tensors[0].shape)}"
            )
    return torch.stack(tensors)


def oracle_fields(
    task: Task,
    outputs: torch.Tensor,
    targets: torch.Tensor,
    classes: list[str] | None = None,
    keys: list[tuple[str, Any]] | None = None,
) -> list[dict]:
    """Per example of ``outputs: (M, B, ...)`` and its ``targets: (B, ...)``, the ``target`` and ``oracle``
    fields (see the module docstring); ``classes`` names a classification run's classes, ``keys`` the
    records (``("index", i)`` or ``("path", p)``), for ``UnfitTargets`` to name the first that does not
    fit."""
    targets = targets.to(outputs.device)
    if isinstance(task, Classification):
        _check_classes(targets, outputs.shape[-1], keys)
    try:
        best = task.oracle(outputs, targets)
    except (TypeError, ValueError, RuntimeError) as err:  # RuntimeError: a user's loss of mismatched shapes
        raise UnfitTargets(
            f"{str(err).splitlines()[0]} (the targets given with the inputs, for a {task.name} run)"
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
    found = best.found.tolist()  # (B,): False where no member has an error to name
    return [
        ({"target": [_r(v) for v in rows[i]]} if rows is not None else {})
        | {"oracle": {"member": member[i], "error": _r(e)} if found[i] else {"member": None, "error": None}}
        for i, e in enumerate(error)
    ]


def _check_classes(targets: torch.Tensor, num_classes: int, keys: list[tuple[str, Any]] | None) -> None:
    """Targets ``(B,)`` of class indices the run knows (0..num_classes-1), else ``UnfitTargets`` naming the
    first that is not one (an out-of-distribution label, a class the run never trained on)."""
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise UnfitTargets(f"targets of dtype {targets.dtype}; expected integer class indices")
    if targets.ndim != 1:
        return  # the task's own check names the shape
    bad = ((targets < 0) | (targets >= num_classes)).nonzero()
    if len(bad):
        i = int(bad[0])
        kind, value = keys[i] if keys is not None else ("index", i)
        where = f"inputs[{value}]" if kind == "index" else str(value)
        raise UnfitTargets(f"{where}: target {int(targets[i])}; the run's classes are 0..{num_classes - 1}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _class_names(targets: torch.Tensor, classes: list[str] | None) -> list[Any]:
    """Each target class's name (its index where the run names no classes)."""
    labels = targets.reshape(-1).tolist()
    return [classes[t] if classes is not None and 0 <= t < len(classes) else t for t in labels]


def _r(x: float) -> float:
    """6 significant digits, as the records' other numbers."""
    return float(f"{x:.6g}") if math.isfinite(x) else x
