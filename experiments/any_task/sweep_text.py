"""Tiny-BERT sequence classification with ambiguous labels (issue 32, example d) over seeds, through
`mheads.fit`: an ensemble of Hugging Face `BertForSequenceClassification` members (dict inputs, `ModelOutput`
outputs; `train_text.run`) trained independently, by MCL (k = 1), by MCL plus cross-entropy (`mcl_ce`) or by
relaxed winner-takes-all (`rwta`); the `shared_*` cells train the same losses on members that share one BERT
trunk, a `Linear` head each (`train_text.run(shared=True)`). Writes `seeds.csv` and `results.csv` to `--out`;
`--append` adds to the folder's `seeds.csv` instead (a row it already holds is kept, and a rerun's value must
equal it: `merge`).

Metrics on held-out sequences, in %: the ensemble's accuracy (mean probabilities; one model's ceiling is
`text.BAYES_ACC`, 83.3%), the oracle's (right when any member is right; 100% is reachable only by members
that answer 2 and 3 on the ambiguous third), the members' mean accuracy, the ensemble's NLL, the ensemble's
accuracy on the unambiguous sequences and the oracle's on the ambiguous ones (`train_text.parts`), the
members' test win shares, largest first (`test_win_<r>`, a share of 1), and the ensemble's parameter count
(`params_k`, thousands, a shared trunk once).

    python -m mheads.experiments.any_task.sweep_text --out experiments/results/any-task-text-cpu
    python -m mheads.experiments.any_task.sweep_text --out experiments/results/any-task-text-cpu --append \
        --cells shared_independent shared_mcl shared_mcl_ce shared_rwta
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from mheads.experiments.any_task import record, train_text

LOSSES = {"independent": "independent_ce", "mcl": "mcl", "mcl_ce": "mcl_ce", "rwta": "rwta"}  # cell: loss
CELLS = {
    **{c: (loss, False) for c, loss in LOSSES.items()},
    **{f"shared_{c}": (loss, True) for c, loss in LOSSES.items()},
}
KEY = ("cell", "seed", "metric")


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """`old` rows (a committed `seeds.csv`) and then the `new` rows whose (cell, seed, metric) `old` lacks; a
    new row that `old` holds must have its value (a rerun reproduces the committed run), else an error naming
    it. Old rows stay as read (their wall times too), so the committed lines are written back unchanged."""
    held = {tuple(str(r[k]) for k in KEY): r for r in old}
    out = list(old)
    for r in new:
        row = held.get(tuple(str(r[k]) for k in KEY))
        if row is None:
            out.append(r)
        elif not _same(float(row["value"]), float(r["value"])):
            key = ", ".join(f"{k} {r[k]}" for k in KEY)
            raise ValueError(
                f"{key}: the rerun gives {r['value']!r}, the table holds {row['value']!r}; expected equal"
            )
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(train_text.SCALES), default="bench")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    p.add_argument("--out", required=True)
    p.add_argument("--append", action="store_true", help="add to --out's seeds.csv instead of replacing it")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model on a shared CPU (fit also runs with train.threads 1)
    rows = record.read(f"{args.out}/seeds.csv") if args.append else []
    for seed in args.seeds:
        for cell in args.cells:
            loss, shared = CELLS[cell]
            start = time.perf_counter()
            metrics = train_text.run(loss, args.scale, seed, shared=shared)
            wall = time.perf_counter() - start
            new = record.seed_rows("any-task-text", args.scale, "text.make", cell, seed, metrics, wall)
            rows = merge(rows, new)
            print(f"seed {seed} {cell}: {metrics} ({wall:.1f} s)", flush=True)
            record.write(args.out, rows)  # after every cell: a partial sweep still leaves its tables
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
