"""``mheads eval``'s report: every ensemble and uncertainty metric of a run, on its own test split and on
out-of-distribution sets, written as JSON into the run folder with figures (reliability diagram, risk-coverage
curve, OOD score histograms), and printed as tables."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from mheads.core.atomic import atomic_write_text
from mheads.data import DataError
from mheads.data.channel_view import CONVERTIBLE, ChannelView
from mheads.data.index import streamable
from mheads.data.load import dataset_name
from mheads.data.loader import prepare
from mheads.ensemble.calibration import apply_temperature, reliability_bins
from mheads.ensemble.selective import risk_coverage_curve
from mheads.ensemble.uncertainty_report import uncertainty_arrays
from mheads.infer.eval_data import bad_file_advice, scored_split
from mheads.infer.evaluate import load_for_eval
from mheads.report.tables import pct, table
from mheads.runs.folder import strict_json
from mheads.runs.run_files import load_calibration
from mheads.train.analysis import analyse, collect_logits
from mheads.train.comm import LocalComm
from mheads.train.evaluate import evaluate

__all__ = ["format_report", "report_run"]


def _ood_logits(tree, cfg, in_data, path: str) -> torch.Tensor:
    """Member logits on the test split of the data set at ``path``, seen as the run sees its own data (its
    image size, its normalization, its channels: colour images are converted for a greyscale model and the
    other way round, as ``mheads predict`` does). A folder with only a ``test/`` split (an OOD set needs no
    training images) is read file by file, exactly as ``predict`` reads them; from one with a ``train/``
    split only the test split is read (:func:`mheads.infer.eval_data.scored_split`): a bad training image
    does not stop it."""
    channels = getattr(in_data.normalizer, "channels", in_data.in_channels)  # the model's
    normalizer = getattr(in_data.normalizer, "normalizer", in_data.normalizer)  # the run's own
    folder = Path(path)
    if folder.is_dir() and (folder / "test").is_dir() and not (folder / "train").exists():
        return _file_logits(tree, cfg, normalizer, channels, in_data, folder / "test")
    c = copy.deepcopy(cfg)
    d = c.data
    d.source, d.classes, d.val_fraction, d.label_split, d.bagging, d.train_limit = (
        str(path),
        None,
        0.0,
        None,
        False,
        None,
    )
    if streamable(path):
        d.loader, d.image_size = "stream", in_data.image_size
    elif d.image_size is not None:
        d.loader, d.image_size, d.train_crop = "resident", None, "pad"
    od = scored_split(c, in_data.device, "test")
    if od is None:  # a layout read whole (CIFAR batches, idx files)
        od = prepare(c, in_data.device)
    if od.image_size != in_data.image_size or (
        od.in_channels != channels and (od.in_channels, channels) not in CONVERTIBLE
    ):
        raise DataError(
            f"--ood {path}: {od.in_channels}-channel {od.image_size}x{od.image_size} images; the "
            f"run's model takes {channels}-channel {in_data.image_size}x{in_data.image_size}"
        )
    od.normalizer = ChannelView(normalizer, channels)
    return collect_logits(tree, od, "test", cfg.train.eval_batch_size)[0]


@torch.no_grad()
def _file_logits(tree, cfg, normalizer, channels: int, in_data, folder: Path) -> torch.Tensor:
    """Member logits ``(M, K, C)`` of the image files under ``folder``, read as ``mheads predict`` reads
    them."""
    from mheads.infer.predict import image_paths

    size = in_data.image_size
    resize = cfg.data.eval_resize or size
    files = image_paths([folder])
    was_training = tree.training
    tree.eval()
    out = []
    batch = cfg.train.eval_batch_size
    for start in range(0, len(files), batch):
        x = torch.stack([_ood_image(f, channels, size, resize) for f in files[start : start + batch]])
        out.append(tree(normalizer(x.to(in_data.device))).float().cpu())
    tree.train(was_training)
    return torch.cat(out, dim=1)


def _ood_image(path: Path, channels: int, size: int, resize: int) -> torch.Tensor:
    """``load_image``, a bad file one line naming it and what eval can do (as for a set with train/)."""
    from mheads.infer.predict import load_image

    try:
        return load_image(path, channels, size, resize)
    except DataError as err:
        raise DataError(f"{err}; {bad_file_advice('test')}") from None


def report_run(
    run: str | Path, data: str | None = None, ood: Sequence[str] = (), figures: bool = True, model=None
) -> dict:
    """The report of ``run`` (see the module docstring); writes ``eval-report.json`` (``eval-report-<data
    set>.json`` with ``data``) and, with ``figures``, PNGs under ``<run>/plots/``."""
    run = Path(run)
    cfg, tree, d = load_for_eval(run, data, model)  # model: see mheads.train.reopen
    metrics = evaluate(tree, d, cfg, LocalComm())
    if metrics is None:  # evaluate returns None off the root rank only; a LocalComm is the root
        raise RuntimeError("report_run: evaluate returned no metrics for a single-process evaluation")
    oods = {}
    for path in ood:
        name = dataset_name(Path(path))
        oods[name if name not in oods else str(path)] = _ood_logits(tree, cfg, d, path)
    calibration = load_calibration(run, tree.num_members)
    test = collect_logits(tree, d, "test", cfg.train.eval_batch_size)
    report = {
        "metrics": {k: v for k, v in metrics.items() if k != "oracle_assignment"},
        **analyse(tree, d, cfg, calibration, oods, test=test),
    }
    report["data"] = OWN_DATA if data is None else os.path.abspath(data)
    suffix = _report_suffix(run, data)
    atomic_write_text(run / f"eval-report{suffix}.json", strict_json(report, indent=1) + "\n")
    report["report_file"] = str(run / f"eval-report{suffix}.json")
    if figures:
        report["figures"] = _figures(run, suffix, test, calibration, oods, d, cfg, tree, report)
    return report


OWN_DATA = "(the run's own data source)"


def _report_suffix(run: Path, data: str | None) -> str:
    """One report per evaluated data set: ``eval-report.json`` for the run's own data, ``eval-report-<data
    set name>.json`` for another (``x.tar.gz`` -> ``-x``), and ``eval-report-<name>-<hash of its absolute
    path>.json`` when that name already holds the report of another data set of the same name."""
    if data is None:
        return ""
    name, where = dataset_name(Path(data)), os.path.abspath(data)
    try:
        recorded = json.loads((run / f"eval-report-{name}.json").read_bytes().decode("utf-8")).get("data")
    except (OSError, ValueError, AttributeError):  # none yet, or unreadable: it is this set's to (re)write
        recorded = where
    if recorded in (where, None):
        return f"-{name}"
    return f"-{name}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"


def _figures(run, suffix, test, calibration, oods, d, cfg, tree, report) -> list[str]:
    from mheads.report.uncertainty_figures import reliability_diagram, risk_coverage, score_histograms

    logits, y = test
    plots = run / "plots"
    arrays = {"uncalibrated": uncertainty_arrays(logits, y)}
    if calibration is not None:
        arrays["temperature-scaled"] = uncertainty_arrays(
            apply_temperature(logits, calibration["temperature"]), y
        )
    bins = {
        k: {n: v.tolist() for n, v in reliability_bins(a["confidence"], a["correct"]).items()}
        for k, a in arrays.items()
    }
    out = [
        reliability_diagram(bins, plots / f"reliability{suffix}.png"),
        risk_coverage(
            {k: _as_lists(*risk_coverage_curve(a["confidence"], a["correct"])) for k, a in arrays.items()},
            plots / f"risk_coverage{suffix}.png",
        ),
    ]
    sets = dict(oods)
    if d.split_size("ood"):
        sets["open_set"] = collect_logits(tree, d, "ood", cfg.train.eval_batch_size)[0]
    for name, out_logits in sets.items():
        a = uncertainty_arrays(logits, y, out_logits)
        aurocs = {k: v["auroc"] for k, v in report["ood"][name].items()}
        out.append(
            score_histograms(
                {k: v.tolist() for k, v in a["scores"].items()},
                {k: v.tolist() for k, v in a["ood_scores"].items()},
                plots / f"ood_{name}{suffix}.png",
                out_label=name,
                aurocs=aurocs,
            )
        )
    return [str(p) for p in out]


def _as_lists(coverage: torch.Tensor, risk: torch.Tensor) -> tuple[list[float], list[float]]:
    return coverage.tolist(), risk.tolist()


FPR95_NOTE = (
    "FPR95-in: the OOD literature's FPR at 95% TPR (in-distribution positive): the share of "
    "OOD images accepted at the threshold that accepts 95% of the test images; FPR95-out (OOD "
    "positive): the share of test images flagged at the threshold that flags 95% of the OOD "
    "images. AUPR chance = the positive class's share."
)


def format_report(name: str, report: dict) -> str:
    """The report as text tables: calibration and selective prediction, then OOD detection per set."""
    rows = []
    for label, r in (("uncalibrated", report), ("temperature-scaled", report.get("calibrated"))):
        if r is None:
            continue
        rows.append(
            [
                label,
                pct(r["ensemble_mean_acc"]),
                pct(r["oracle_acc"]),
                f"{r['nll']:.4f}",
                f"{r['ece']:.4f}",
                f"{r['adaptive_ece']:.4f}",
                f"{r['classwise_ece']:.4f}",
                f"{r['aurc']:.4f}",
                f"{r['eaurc']:.4f}" if "eaurc" in r else "-",
                f"{r['entropy']['epistemic']:.4f}",
            ]
        )
    if "calibration" in report:
        scaling = f", temperature {report['calibration']['temperature']:.3f}"
    else:
        scaling = f"; temperature scaling {report.get('temperature_scaling', 'not fitted')}"
    head = [
        "",
        "ensemble-mean",
        "oracle",
        "NLL",
        "ECE",
        "adaptive ECE",
        "class-wise ECE",
        "AURC",
        "E-AURC",
        "mutual info",
    ]
    lines = [f"{name}: {report['test_examples']} test examples{scaling}", table(head, rows)]
    for set_name, crits in report.get("ood", {}).items():
        first = next(iter(crits.values()))
        chance = (
            f"; AUPR chance: in {first['aupr_in_chance']:.3f}, out {first['aupr_out_chance']:.3f}"
            if "aupr_in_chance" in first
            else ""
        )
        lines.append(f"out-of-distribution: {set_name} ({report['ood_examples'][set_name]} images{chance})")
        lines.append(
            table(
                ["criterion", "AUROC", "AUPR-in", "AUPR-out", "FPR95-in", "FPR95-out"],
                [
                    [c, *(_cell(v, k) for k in ("auroc", "aupr_in", "aupr_out", "fpr95_in", "fpr95_out"))]
                    for c, v in crits.items()
                ],
            )
        )
    if report.get("ood"):
        lines.append(FPR95_NOTE)
    return "\n".join(lines)


def _cell(values: dict, key: str) -> str:
    """A metric to 4 places; '-' where a report from an older version lacks it."""
    return f"{values[key]:.4f}" if key in values else "-"
