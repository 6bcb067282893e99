"""``mheads eval`` of a task run (regression, multi_hypothesis, segmentation, a user's task; issue 32): the
task's metrics plus the report's (:mod:`mheads.infer.task_eval`), printed as a table with a one-line meaning
per metric and a table per member (its error and its win share), written as ``eval-report.json`` in the run
folder (``eval-report-<data set>.json`` for other data, named as the classification report names it:
:mod:`mheads.report.evaluation`) with figures under ``<run>/plots/``:

- regression: ``predicted_vs_true`` (with the mixture's 90% interval; point heads: the members' range) and,
  for Gaussian heads, ``coverage`` (nominal against observed central-interval coverage);
- multi_hypothesis: for one input feature and a 1-D target, ``hypotheses`` (each member's hypothesis over
  the data, opacity by score);
- segmentation: ``class_iou`` (per class, the ensemble's IoU and the oracle's);
- every task: ``win_share`` (per member, how often it is the oracle's pick; with scores, its mean score).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mheads.config import load_config
from mheads.core.atomic import atomic_write_text
from mheads.infer.evaluate import RunEvaluation, evaluate_run, evaluate_run_arrays
from mheads.report.evaluation import OWN_DATA, _report_suffix
from mheads.report.tables import format_run_summary, table
from mheads.runs.folder import strict_json
from mheads.tasks import MultiHypothesis, Regression, Segmentation

__all__ = ["MEANINGS", "format_task_report", "report_task_run", "task_eval_text"]

GIVEN_DATA = "(a Dataset given from Python)"
MEANINGS = {
    "rmse": "root mean squared error of the ensemble's mean prediction",
    "mae": "mean absolute error of the ensemble's mean prediction",
    "oracle_rmse": "oracle error: per example the best member's error (well below rmse: members differ)",
    "mixture_nll": "NLL of the targets under the members' equal-weight Gaussian mixture",
    "aleatoric": "mean of the members' variances: the noise each member predicts",
    "epistemic": "variance of the members' means: their disagreement",
    "oracle_error": "oracle error (minADE): per example the distance of the closest hypothesis",
    "distortion": "score-weighted mean squared distance of the hypotheses to the target",
    "weighted_mean_error": "distance of the score-weighted mean hypothesis to the target",
    "emd": "earth mover's distance between the weighted hypotheses and the true distribution",
    "sliced_emd": "sliced earth mover's distance between the weighted hypotheses and the true distribution",
    "pixel_acc": "share of labelled pixels the ensemble (mean probabilities) gets right",
    "mean_iou": "the ensemble's IoU per class, averaged over the classes present",
    "oracle_pixel_acc": "pixel accuracy with each image predicted by its best member",
    "oracle_mean_iou": "mean IoU with each image predicted by its best member",
    "mean_member_loss": "the members' mean loss",
    "oracle_loss": "oracle error: per example the lowest member loss",
    "averaged_loss": "the loss of the members' combined output",
    "metric": "the task's metric of the combined output",
}
WIN_NOTE = (
    "win share: how often the member is the oracle's pick (per example, the lowest error, ties to the "
    "lowest index); one member near 100% is MCL collapse, all near 1/M no specialisation"
)


def _value(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}"


def _metric_rows(metrics: dict) -> list[list[str]]:
    """One row per scalar metric (coverage: one per level), in the task's order."""
    rows = []
    for key, value in metrics.items():
        if key == "coverage":
            for level, share in value.items():
                meaning = f"share of targets inside the mixture's central {float(level):.0%} interval"
                rows.append([f"coverage {level}", _value(share), f"{meaning} (calibrated: {level})"])
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "num_examples":
            rows.append([key, _value(value), MEANINGS.get(key, "")])
    return rows


def _member_table(metrics: dict) -> str:
    """Per member: the task's natural error column(s), the mean score where hypotheses are scored, the win
    share."""
    if "member_rmse" in metrics:
        columns = [("member_rmse", "RMSE")]
    elif "member_pixel_acc" in metrics:
        columns = [("member_pixel_acc", "pixel acc")]
    else:
        what = "mean distance" if metrics["task"] == MultiHypothesis.name else "mean loss"
        columns = [("member_error", what)]
    if "member_score" in metrics:
        columns.append(("member_score", "mean score"))
    rows = [
        [str(m), *(_value(metrics[key][m]) for key, _ in columns), f"{100 * share:.2f}%"]
        for m, share in enumerate(metrics["win_share"])
    ]
    return table(["member", *(head for _, head in columns), "win share"], rows)


def format_task_report(name: str, metrics: dict) -> str:
    """A task run's metrics as text: a metric table (value, meaning), a member table and, for segmentation,
    the per-class IoU."""
    lines = [
        f"{name}: task {metrics['task']}, {metrics['num_examples']} examples",
        table(["metric", "value", "meaning"], _metric_rows(metrics), align="lrl"),
        _member_table(metrics),
        WIN_NOTE,
    ]
    if "class_iou" in metrics:
        pairs = zip(metrics["class_iou"], metrics["oracle_class_iou"])
        rows = [[str(c), _value(e), _value(o)] for c, (e, o) in enumerate(pairs)]
        lines.append(table(["class", "IoU (ensemble)", "IoU (oracle)"], rows))
    return "\n".join(lines)


def report_task_run(
    run: str | Path,
    data: str | None = None,
    *,
    figures: bool = True,
    model=None,
    dataset=None,
    tree=None,
    task=None,
) -> dict:
    """The report of a task run on its test split (see the module docstring): on its own data, on ``data``
    (a path) or on ``dataset`` (a ``TorchData`` of a user's Datasets: ``eval-report-dataset.json``); writes
    the JSON report and, with ``figures``, the PNGs; returns ``{"task", "data", "metrics", "report_file",
    "figures"}``. ``model``, ``tree``, ``task``: as :func:`mheads.infer.evaluate.evaluate_run` takes them."""
    run = Path(run)
    found = evaluate_run_arrays(run, data, "test", model, dataset=dataset, tree=tree, task=task)
    if dataset is not None:
        where, suffix = GIVEN_DATA, "-dataset"
    else:
        where, suffix = (OWN_DATA if data is None else os.path.abspath(data)), _report_suffix(run, data)
    report: dict[str, Any] = {"task": found.metrics["task"], "data": where, "metrics": found.metrics}
    atomic_write_text(run / f"eval-report{suffix}.json", strict_json(report, indent=1) + "\n")
    report["report_file"] = str(run / f"eval-report{suffix}.json")
    report["figures"] = _figures(run / "plots", suffix, found) if figures else []
    return report


def _figures(plots: Path, suffix: str, found: RunEvaluation) -> list[str]:
    from mheads.report import task_figures as fig

    m, a, out = found.metrics, found.arrays, []
    if isinstance(found.task, Regression):
        interval = "90% interval (mixture)" if found.task.head == "gaussian" else "members' range"
        t, mean, lo, hi = (a[k].tolist() for k in ("target", "mean", "lower", "upper"))
        out.append(fig.predicted_vs_true(t, mean, lo, hi, plots / f"predicted_vs_true{suffix}.png", interval))
        if "coverage_curve" in m:
            curve = m["coverage_curve"]
            out.append(
                fig.coverage_curve(curve["nominal"], curve["observed"], plots / f"coverage{suffix}.png")
            )
    if isinstance(found.task, MultiHypothesis) and "x" in a:
        x, y, points, weights = (a[k].tolist() for k in ("x", "target", "points", "weights"))
        out.append(fig.hypotheses_over_data(x, y, points, weights, plots / f"hypotheses{suffix}.png"))
    if isinstance(found.task, Segmentation):
        out.append(
            fig.class_iou_bars(m["class_iou"], m["oracle_class_iou"], plots / f"class_iou{suffix}.png")
        )
    out.append(fig.win_share_bars(m["win_share"], plots / f"win_share{suffix}.png", m.get("member_score")))
    return [str(p) for p in out]


def task_eval_text(
    run: str | Path, data: str | None = None, split: str = "test", figures: bool = True, model=None
) -> str:
    """What ``mheads eval`` prints for a run on inputs of any shape: the tables, the report file and figures
    written (test split only, as for classification), then the metrics as one JSON line. A classifier of
    such inputs prints the classification summary and its metrics."""
    name = f"{run} ({split})"
    if split != "test" or load_config(Path(run) / "config.yaml").task.is_classification:
        metrics = evaluate_run(run, data=data, split=split, model=model)
        if "task" not in metrics:  # classification of inputs that are not images: no task report
            return f"{format_run_summary(name, metrics)}\n{json.dumps(metrics)}"
        return f"{format_task_report(name, metrics)}\n{json.dumps(metrics)}"
    report = report_task_run(run, data, figures=figures, model=model)
    lines = [format_task_report(name, report["metrics"]), f"report: {report['report_file']}"]
    if report["figures"]:
        lines.append(f"figures: {', '.join(report['figures'])}")
    return "\n".join([*lines, json.dumps(report["metrics"])])
