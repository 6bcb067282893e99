"""``mheads demo``: train a single model, an independent ensemble, a TreeNet and an MCL ensemble on the
embedded Fashion-MNIST subset, print the comparison table and write the Figure 2-style heatmaps."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path

from mheads.report.figures import heatmap_grid
from mheads.report.tables import pct, table
from mheads.reproduce.spec import load_spec
from mheads.train.loop import fit

HEADERS = ["run", "members", "member acc (%)", "ensemble-mean (%)", "oracle (%)", "params", "time (s)"]


def summary_row(name: str, m: int, metrics: dict, seconds: float) -> list:
    accs = metrics["member_acc"]
    members = f"{pct(min(accs))}-{pct(max(accs))}" if len(accs) > 1 else pct(accs[0])
    return [
        name,
        m,
        members,
        pct(metrics["ensemble_mean_acc"]),
        pct(metrics["oracle_acc"]),
        f"{metrics['param_counts']['total']:,}",
        f"{seconds:.0f}",
    ]


def run_demo(out: Path, recipe: str | None = None, overrides: Sequence[str] = ()) -> list[list]:
    """Train every cell of the demo spec (``experiments/demo.yaml``, or the spec file ``recipe``) into
    ``out/<cell>``, with no scale preset; returns the table's rows."""
    spec = load_spec(recipe or "demo", None, None, list(overrides))
    out.mkdir(parents=True, exist_ok=True)
    rows: list[list] = []
    panels: list[tuple[str, list[list[float]]]] = []
    classes: list[str] = []
    t_all = time.perf_counter()
    for cell in spec.cells:
        name, cfg = cell.row, cell.config
        print(
            f"== {name}: {cfg.model.members} x {cfg.model.name}, split {cfg.model.split}, "
            f"loss {cfg.loss.name}",
            flush=True,
        )
        t0 = time.perf_counter()
        metrics = fit(cfg, out / cell.name, overwrite=True)
        if metrics is None:  # fit returns None off the root rank only; the demo runs in one process
            raise RuntimeError(f"demo: training {cell.name!r} returned no metrics")
        seconds = time.perf_counter() - t0
        rows.append(summary_row(name, cfg.model.members, metrics, seconds))
        classes = metrics["classes"]
        if cfg.model.members > 1:
            panels.append((name, metrics["oracle_assignment"]))
    text = table(HEADERS, rows)
    total = time.perf_counter() - t_all
    print()
    print(text)
    print(f"\ntotal wall time {total:.0f} s")
    (out / "demo_table.md").write_text(text + f"\n\ntotal wall time {total:.0f} s\n")
    with open(out / "demo_table.csv", "w", newline="") as f:
        csv.writer(f).writerows([HEADERS] + rows)
    if panels:
        png = heatmap_grid(panels, classes, out / "oracle_assignment.png")
        print(f"heatmaps of the oracle assignment per class: {png}")
    (out / "demo.json").write_text(json.dumps({"rows": rows, "wall_time_s": total}, indent=2))
    return rows
