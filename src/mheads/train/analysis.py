"""What an ensemble knows about its own uncertainty: temperature scaling fitted on the held-out split, and the
uncertainty report (entropy decomposition, calibration, selective prediction, out-of-distribution detection,
MCL's set-valued metrics) on the test split, with or without out-of-distribution sets.

Used at the end of training (runs with ``data.val_fraction`` or ``data.classes``) and by ``mheads eval``; both
compute the same numbers from the same weights, so ``mheads eval`` reproduces what a run recorded.
"""

from __future__ import annotations

import logging

import torch

from mheads.config import Config
from mheads.core.notes import ONCE
from mheads.ensemble.accumulator import EnsembleMetrics
from mheads.ensemble.calibration import apply_temperature, fit_temperature
from mheads.ensemble.detection import threshold_at_tpr
from mheads.ensemble.losses import LOSSES
from mheads.ensemble.uncertainty import CRITERIA
from mheads.ensemble.uncertainty_report import uncertainty_report

__all__ = ["analyse", "calibrate", "collect_logits", "summary", "NOT_CALIBRATED"]

log = logging.getLogger("mheads")
NOT_CALIBRATED = (
    "not fitted: the run has no held-out split (train with data.val_fraction > 0, e.g. 0.1, to "
    "fit it); every number is uncalibrated"
)
OOD_TPR = 0.95  # the share of held-out in-distribution images that `predict`'s OOD flag leaves unflagged


@torch.no_grad()
def collect_logits(model, data, split: str, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Member logits ``(M, N, C)`` (float32, CPU) and labels ``(N,)`` of a whole split, in order."""
    was_training = model.training
    model.eval()
    xs, ys = [], []
    for x, y in data.eval_batches(split, batch_size):
        xs.append(model(x).float().cpu())
        ys.append(y.cpu())
    model.train(was_training)
    if not xs:
        raise ValueError(f"split {split!r} is empty")
    return torch.cat(xs, dim=1), torch.cat(ys)


def calibrate(model, data, cfg: Config) -> dict | None:
    """Temperature scaling on the held-out split (None without one, said in the log): one temperature for the
    averaged prediction, one per member for each member alone, and ``ood_threshold``, the threshold of
    ``mheads predict``'s OOD flag: the criterion (``max_member_prob`` for an assigning loss, whose members are
    specialists, else ``max_prob``) on the temperature-scaled held-out logits, at the score below which
    ``OOD_TPR`` of those in-distribution images fall."""
    if not data.split_size("val"):
        log.info("temperature scaling skipped: %s", NOT_CALIBRATED.removeprefix("not fitted: "), extra=ONCE)
        return None
    logits, y = collect_logits(model, data, "val", cfg.train.eval_batch_size)
    t = fit_temperature(logits, y)
    per = fit_temperature(logits, y, per_member=True)
    before = _ensemble_nll(logits, y)
    scaled = apply_temperature(logits, t)
    criterion = "max_member_prob" if cfg.loss.name in LOSSES and LOSSES[cfg.loss.name].assigns else "max_prob"
    threshold = threshold_at_tpr(CRITERIA[criterion](scaled), OOD_TPR)
    return {
        "temperature": float(t),
        "member_temperatures": [float(v) for v in per],
        "val_examples": int(len(y)),
        "val_nll_before": before,
        "val_nll_after": _ensemble_nll(scaled, y),
        "ood_threshold": {
            "criterion": criterion,
            "threshold": threshold,
            "tpr": OOD_TPR,
            "fitted_on": f"the held-out split ({int(len(y))} images), logits divided by temperature",
        },
    }


def _ensemble_nll(logits: torch.Tensor, y: torch.Tensor) -> float:
    acc = EnsembleMetrics(logits.shape[0], logits.shape[2])
    acc.update(logits, y)
    return float(acc.compute()["nll"])


def analyse(
    model,
    data,
    cfg: Config,
    calibration: dict | None = None,
    ood: dict[str, torch.Tensor] | None = None,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict:
    """The uncertainty report on the test split; ``ood`` maps a name to out-of-distribution member logits
    (``data``'s own "ood" split, the other classes of an open-set run, is added as "open_set"). With a
    ``calibration``, the report of the temperature-scaled logits is added under "calibrated". ``test``: the
    test split's logits and labels when the caller has them already."""
    logits, y = test if test is not None else collect_logits(model, data, "test", cfg.train.eval_batch_size)
    ood = dict(ood or {})
    if data.split_size("ood"):
        ood["open_set"] = collect_logits(model, data, "ood", cfg.train.eval_batch_size)[0]
    report = {"test_examples": int(len(y)), **_report(logits, y, ood)}
    if calibration is None:
        report["temperature_scaling"] = NOT_CALIBRATED
    else:
        t = calibration["temperature"]
        scaled = {k: apply_temperature(v, t) for k, v in ood.items()}
        report["calibration"] = calibration
        report["calibrated"] = _report(apply_temperature(logits, t), y, scaled)
    return report


def _report(logits, y, ood: dict[str, torch.Tensor]) -> dict:
    acc = EnsembleMetrics(logits.shape[0], logits.shape[2])
    acc.update(logits, y)
    m = acc.compute()
    base = {k: m[k] for k in ("ensemble_mean_acc", "oracle_acc", "nll", "brier", "ece")}
    first = uncertainty_report(logits, y)
    report = {**base, **first}
    if ood:
        report["ood"], report["ood_entropy"], report["ood_examples"] = {}, {}, {}
        for name, out in ood.items():
            r = uncertainty_report(logits, y, out)
            report["ood"][name], report["ood_entropy"][name] = r["ood"], r["ood_entropy"]
            report["ood_examples"][name] = r["num_ood_examples"]
        report["ood_conventions"] = r["ood_conventions"]  # which class is positive in each column, in words
    return report


def summary(report: dict) -> dict:
    """The report's headline numbers as flat metrics (``metrics.json`` keys)."""
    out = {k: report[k] for k in ("aurc", "adaptive_ece", "classwise_ece") if k in report}
    cal = report.get("calibrated")
    if cal is not None:
        out["temperature"] = report["calibration"]["temperature"]
        out.update(nll_calibrated=cal["nll"], ece_calibrated=cal["ece"], aurc_calibrated=cal.get("aurc"))
    for name, crits in report.get("ood", {}).items():
        prefix = "ood" if name == "open_set" else f"ood_{name}"
        for crit, values in crits.items():
            out[f"{prefix}_auroc_{crit}"] = values["auroc"]
            out[f"{prefix}_fpr95_in_{crit}"] = values["fpr95_in"]  # in-distribution positive (the literature)
            out[f"{prefix}_fpr95_out_{crit}"] = values["fpr95_out"]  # OOD positive
    return out
