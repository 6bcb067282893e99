"""Result tables of the any-task examples, in the format of the paper sweeps (`scripts/check_results.py`
reads both): `seeds.csv` (one row per cell, seed and metric, with the wall time and the hardware) and
`results.csv` (mean and sample standard deviation over seeds per cell and metric)."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

from mheads.reproduce.tables import SEED_FIELDS  # the paper sweeps' seeds.csv columns: one format
from mheads.runs.folder import hardware

RESULT_FIELDS = ("cell", "row", "col", "metric", "seeds", "mean", "std", "paper", "wall_time_s")


def hardware_line() -> str:
    """This machine and torch, one line (the hardware column; `reproduce.sweep.describe_hardware`'s form)."""
    hw = hardware()
    return f"{hw['cpu']}, {hw['cores']} cores, torch {hw['torch']}"


def seed_rows(
    experiment: str,
    scale: str,
    data: str,
    cell: str,
    seed: int,
    metrics: dict[str, float],
    wall_time_s: float,
) -> list[dict]:
    """One `seeds.csv` row per metric of one run (non-finite values kept as written: nan)."""
    hw = hardware_line()
    return [
        {
            "experiment": experiment,
            "scale": scale,
            "data": data,
            "overrides": "",
            "cell": cell,
            "seed": seed,
            "metric": k,
            "value": float(v),
            "wall_time_s": wall_time_s,
            "hardware": hw,
        }
        for k, v in metrics.items()
    ]


def summarize(rows: list[dict]) -> list[dict]:
    """`results.csv` rows: per (cell, metric), the number of seeds, mean, sample std (n - 1) and the summed
    wall time, in the order the cells first appear."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["cell"], r["metric"]), []).append(r)
    out = []
    for (cell, metric), rs in groups.items():
        values = [float(r["value"]) for r in rs]
        finite = [v for v in values if math.isfinite(v)]
        mean = statistics.mean(finite) if finite else math.nan
        std = statistics.stdev(finite) if len(finite) > 1 else math.nan
        out.append(
            {
                "cell": cell,
                "row": cell,
                "col": "",
                "metric": metric,
                "seeds": len(finite),
                "mean": mean,
                "std": std,
                "paper": "",
                "wall_time_s": sum(float(r["wall_time_s"]) for r in rs),
            }
        )
    return out


def write(folder: str | Path, rows: list[dict]) -> Path:
    """`folder/seeds.csv` and `folder/results.csv` from `seed_rows` rows."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = (("seeds.csv", SEED_FIELDS, rows), ("results.csv", RESULT_FIELDS, summarize(rows)))
    for name, fields, data in tables:
        with open(folder / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(data)
    return folder


def read(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
