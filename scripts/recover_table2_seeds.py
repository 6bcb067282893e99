"""Write experiments/results/table2-cpu/seeds.csv, which the two-seed sweep predates, from committed tables.

Seed 0's numbers are the one-seed results.csv of commit 73d5e8e (the sweep's first commit); the committed
two-seed results.csv holds each cell's mean, std (n - 1) and summed wall time over seeds 0 and 1, so seed 1's
value is 2 * mean - seed 0's, checked against the std. Run from the repository root:
``python scripts/recover_table2_seeds.py``.
"""

from __future__ import annotations

import csv
import io
import math
import subprocess
import sys
from pathlib import Path

from mheads.reproduce.tables import write_seed_rows

SEED0_COMMIT = "73d5e8e"
FOLDER = Path("experiments/results/table2-cpu")
IDENT = {"experiment": "table2", "scale": "cpu", "data": "cifar10-jpeg.tar.gz", "overrides": ""}
HARDWARE = "Intel(R) Xeon(R) Processor, 2 cores, torch 2.13.0+cpu"


def _rows(text: str) -> dict[tuple[str, str], dict]:
    return {(r["cell"], r["metric"]): r for r in csv.DictReader(io.StringIO(text))}


def main() -> int:
    old = _rows(
        subprocess.run(
            ["git", "show", f"{SEED0_COMMIT}:{FOLDER}/results.csv"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    new = _rows((FOLDER / "results.csv").read_text())
    out = []
    for key, r in new.items():
        if int(r["seeds"]) != 2 or key not in old or int(old[key]["seeds"]) != 1:
            print(f"{key}: not a one-seed then two-seed pair; left out", file=sys.stderr)
            return 1
        v0, mean, std = float(old[key]["mean"]), float(r["mean"]), float(r["std"])
        v1 = 2 * mean - v0
        if not math.isclose(abs(v1 - v0) / math.sqrt(2), std, rel_tol=1e-6, abs_tol=1e-9):
            print(f"{key}: seed 1 = {v1} does not give the committed std {std}", file=sys.stderr)
            return 1
        w0 = float(old[key]["wall_time_s"])
        w1 = float(r["wall_time_s"]) - w0
        for seed, value, wall in ((0, v0, w0), (1, v1, w1)):
            out.append(
                {
                    **IDENT,
                    "cell": key[0],
                    "seed": seed,
                    "metric": key[1],
                    "value": value,
                    "wall_time_s": wall,
                    "hardware": HARDWARE,
                }
            )
    write_seed_rows(FOLDER / "seeds.csv", out)  # as a sweep writes it, so a later sweep pools these seeds
    print(f"{FOLDER / 'seeds.csv'}: {len(out)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
