"""The open-set tables of RESULTS.md from a finished `mheads reproduce open-set` sweep folder: accuracy and
calibration (before / after temperature scaling), selective prediction, and out-of-distribution AUROC and
FPR@95%TPR under each criterion, read from each run's `uncertainty.json` and `metrics.json`.

    python scripts/open_set_tables.py runs/open-set-cpu [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mheads.ensemble.uncertainty import CRITERIA as LIBRARY_CRITERIA
from mheads.reproduce.spec import load_spec

# the experiment's cells (name, row label) and the library's OOD criteria, in their order
CELLS = [(c.name, c.row) for c in load_spec("open-set", None, None).cells]
CRITERIA = list(LIBRARY_CRITERIA)


def _row(cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", type=Path)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    runs = {}
    for cell, label in CELLS:
        run = args.sweep / f"seed-{args.seed}" / cell
        if (run / "uncertainty.json").is_file():
            runs[label] = (
                json.loads((run / "uncertainty.json").read_text()),
                json.loads((run / "metrics.json").read_text()),
            )
    head = [
        "",
        "ensemble-mean",
        "oracle",
        "NLL",
        "NLL (T)",
        "ECE",
        "ECE (T)",
        "adaptive ECE (T)",
        "T",
        "AURC",
        "top-1 set coverage",
        "wall (s)",
    ]
    out = [_row(head), _row(["---"] + ["---:"] * (len(head) - 1))]
    for label, (u, m) in runs.items():
        c = u["calibrated"]
        out.append(
            _row(
                [
                    label,
                    f"{100 * u['ensemble_mean_acc']:.2f}",
                    f"{100 * u['oracle_acc']:.2f}",
                    f"{u['nll']:.3f}",
                    f"{c['nll']:.3f}",
                    f"{u['ece']:.3f}",
                    f"{c['ece']:.3f}",
                    f"{c['adaptive_ece']:.3f}",
                    f"{u['calibration']['temperature']:.2f}",
                    f"{u['aurc']:.3f}",
                    f"{100 * u['top1_set_coverage']:.2f}",
                    f"{m['wall_time_s']:.0f}",
                ]
            )
        )
    for metric, title in (
        ("auroc", "OOD AUROC (higher is better)"),
        ("fpr95_in", "FPR at 95% TPR, in-distribution positive (lower is better)"),
        ("fpr95_out", "FPR at 95% TPR, OOD positive (lower is better)"),
    ):
        out += ["", f"{title}:", "", _row(["", *CRITERIA]), _row(["---"] + ["---:"] * len(CRITERIA))]
        for label, (u, _) in runs.items():
            # uncertainty.json files written before FPR95 named its positive class hold only "fpr95" (OOD
            # positive, today's fpr95_out): their cells read n/a, never the other convention's value
            values = {k: u["ood"]["open_set"][k].get(metric) for k in CRITERIA}
            known = [v for v in values.values() if v is not None]
            best = (max(known) if metric == "auroc" else min(known)) if known else None
            out.append(
                _row(
                    [label]
                    + [
                        "n/a" if v is None else f"**{v:.3f}**" if v == best else f"{v:.3f}"
                        for v in values.values()
                    ]
                )
            )
    print("\n".join(out))


if __name__ == "__main__":
    main()
