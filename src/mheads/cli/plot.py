"""``mheads plot``: the figures of a finished run folder, drawn from the files it holds; training draws none.

A classification run: the oracle's assignment per class and member (Figure 2 of the paper) from
``metrics.json``, and the training curves from ``eval.jsonl``; a run of any other task its training curves
(its report and figures come from ``mheads eval``). Records that are not a run's (edited, mistyped) are
skipped as unreadable lines are; a ``metrics.json`` that is not a run's is one line naming it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from mheads.cli.commands import UsageError

__all__ = ["plot_run"]


def plot_run(run: Path) -> int:
    """Draw the figures of the finished run folder ``run`` into ``run/plots`` (see the module docstring);
    a folder that is not a run's, or metrics that are not a run's, is one ``UsageError`` naming the file."""
    from mheads.report.figures import assignment_heatmap, training_curves
    from mheads.runs.entries import check_run_entries
    from mheads.runs.folder import read_jsonl

    check_run_entries(run)  # plots/ linked elsewhere would receive the figures; a FIFO would hang the read
    mpath = run / "metrics.json"
    if not mpath.is_file():
        raise UsageError(f"{mpath}: not found; is {run} a finished run folder?")
    try:
        metrics = json.loads(mpath.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"{mpath}: not readable JSON ({err})") from None
    if isinstance(metrics, dict) and metrics.get("task") not in (None, "classification"):
        return _plot_task(run, str(metrics["task"]))
    fields = ("oracle_assignment", "classes")
    if not isinstance(metrics, dict) or not all(isinstance(metrics.get(k), list) for k in fields):
        raise UsageError(
            f"{mpath}: not a run's metrics (expected an object with the lists "
            f"{' and '.join(fields)}); was it written by mheads train?"
        )
    _check_assignment(mpath, metrics["oracle_assignment"], metrics["classes"])
    heat = assignment_heatmap(
        metrics["oracle_assignment"],
        metrics["classes"],
        run / "plots" / "assignment.png",
        title=f"Oracle assignment per class: {run.name}",
    )
    print(f"wrote {heat}")
    members = len(metrics["oracle_assignment"])
    history = [r for r in read_jsonl(run / "eval.jsonl") if _curve_record(r, members)]
    if history:
        print(f"wrote {training_curves(history, run / 'plots' / 'curves.png', title=run.name)}")
    return 0


def _plot_task(run: Path, task: str) -> int:
    """``mheads plot`` of a task run (regression, multi_hypothesis, segmentation, a user's task): its training
    curves from ``eval.jsonl`` (the per-class heatmap is classification's); eval's figures come from ``mheads
    eval``."""
    from mheads.report.task_figures import task_curves
    from mheads.report.task_report import MEANINGS
    from mheads.runs.folder import read_jsonl

    history = [
        r
        for r in read_jsonl(run / "eval.jsonl")
        if isinstance(r, dict)
        and isinstance(r.get("step"), int)
        and isinstance(r.get("train_loss"), (int, float))
    ]
    if not history:
        raise UsageError(
            f"{run / 'eval.jsonl'}: no evaluation records; expected a run that evaluated at least once"
        )
    keys = [k for k in MEANINGS if all(isinstance(r.get(k), (int, float)) for r in history)]
    path = task_curves(history, keys, run / "plots" / "curves.png", title=f"{run.name} ({task})")
    print(f"wrote {path} (the task's report and figures: mheads eval --run {run})")
    return 0


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_assignment(mpath: Path, assignment: list, classes: list) -> None:
    """metrics.json's oracle assignment: one row per member of finite shares, one per class (named)."""
    rows_ok = all(isinstance(row, list) and len(row) == len(classes) for row in assignment)
    if not (assignment and rows_ok and all(_finite(v) for row in assignment for v in row)) or not all(
        isinstance(c, str) for c in classes
    ):
        raise UsageError(
            f"{mpath}: oracle_assignment: expected one list per member of {len(classes)} finite numbers "
            "(one per class), and classes a list of names; was it written by mheads train?"
        )


def _curve_record(r: dict, members: int) -> bool:
    """An eval.jsonl record the training curves can draw: finite numbers, and one accuracy per member
    (others, e.g. edited ones, are skipped as unreadable lines are)."""
    accs = r.get("member_acc")
    scalars = ("step", "train_loss", "ensemble_mean_acc", "oracle_acc")
    return (
        all(_finite(r.get(k)) for k in scalars)
        and isinstance(accs, list)
        and len(accs) == members
        and all(_finite(v) for v in accs)
    )
