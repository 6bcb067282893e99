"""Write experiments/results/table5-cpu/seeds.csv, which its one-seed sweep (seed 0, on an H200) predates,
from its committed results.csv, so later seeds can pool with it (``mheads reproduce table5 ... --pool-with
experiments/results/table5-cpu``).

With one seed a cell's mean is that seed's value and its wall time that run's. The run trained every
parameter at one rate, the only recipe on 2026-11-26 (commit d25fd34); today that recipe is ``--set
optim.bias_lr_mult=1``, so the rows carry that override. Run from the repository root:
``python scripts/recover_table5_seeds.py``.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from mheads.reproduce.tables import write_seed_rows

FOLDER = Path("experiments/results/table5-cpu")
IDENT = {
    "experiment": "table5",
    "scale": "cpu",
    "data": "cifar10-jpeg.tar.gz",
    "overrides": "optim.bias_lr_mult=1",
}
HARDWARE = (
    "Intel(R) Xeon(R) Processor, 16 cores, GPU NVIDIA H200, torch 2.11.0+cu130"  # its results.md header
)


def main() -> int:
    with open(FOLDER / "results.csv", newline="") as f:
        records = list(csv.DictReader(f))
    out = []
    for r in records:
        if int(r["seeds"]) != 1 or float(r["std"]) != 0.0:
            print(
                f"{r['cell']} {r['metric']}: {r['seeds']} seeds; expected the one-seed table", file=sys.stderr
            )
            return 1
        out.append(
            {
                **IDENT,
                "cell": r["cell"],
                "seed": 0,
                "metric": r["metric"],
                "value": float(r["mean"]),
                "wall_time_s": float(r["wall_time_s"]),
                "hardware": HARDWARE,
            }
        )
    write_seed_rows(FOLDER / "seeds.csv", out)
    print(f"wrote {FOLDER / 'seeds.csv'}: {len(out)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
