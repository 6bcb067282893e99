"""Tiny-BERT sequence classification with ambiguous labels (issue 32, example d) over seeds, through
`mheads.fit`: an ensemble of Hugging Face `BertForSequenceClassification` members (dict inputs, `ModelOutput`
outputs; `train_text.run`) trained independently, by MCL (k = 1), by MCL plus cross-entropy (`mcl_ce`) or by
relaxed winner-takes-all (`rwta`). Writes `seeds.csv` and `results.csv` to `--out`.

Metrics on held-out sequences, in %: the ensemble's accuracy (mean probabilities; one model's ceiling is
`text.BAYES_ACC`, 83.3%), the oracle's (right when any member is right; 100% is reachable only by members
that answer 2 and 3 on the ambiguous third), the members' mean accuracy, the ensemble's NLL, the ensemble's
accuracy on the unambiguous sequences and the oracle's on the ambiguous ones (`train_text.parts`).

    python -m mheads.experiments.any_task.sweep_text --out experiments/results/any-task-text-cpu
"""

from __future__ import annotations

import argparse
import time

import torch

from mheads.experiments.any_task import record, train_text

CELLS = {"independent": "independent_ce", "mcl": "mcl", "mcl_ce": "mcl_ce", "rwta": "rwta"}  # cell: loss


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(train_text.SCALES), default="bench")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model on a shared CPU (fit also runs with train.threads 1)
    rows = []
    for seed in args.seeds:
        for cell in args.cells:
            start = time.perf_counter()
            metrics = train_text.run(CELLS[cell], args.scale, seed)
            wall = time.perf_counter() - start
            rows += record.seed_rows("any-task-text", args.scale, "text.make", cell, seed, metrics, wall)
            print(f"seed {seed} {cell}: {metrics} ({wall:.1f} s)", flush=True)
            record.write(args.out, rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
