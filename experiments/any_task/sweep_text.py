"""Tiny-BERT sequence classification (issue 32, example d) over seeds: an ensemble of Hugging Face
`BertForSequenceClassification` members (dict inputs, `ModelOutput` outputs; `train_text.model`) trained
independently or by MCL (k = 1). Writes `seeds.csv` and `results.csv` to `--out`.

Metrics on held-out sequences, in %: the ensemble's accuracy (mean probabilities), the oracle's (right when
any member is right), the members' mean accuracy, and the ensemble's NLL. With two classes an oracle over
M >= 2 members is right on every example as soon as two members disagree, so MCL's oracle accuracy says
little here on its own: the members' and the ensemble's accuracy say what it costs.

    python -m mheads.experiments.any_task.sweep_text --out experiments/results/any-task-text-cpu
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mheads.experiments.any_task import loop, record, text, train_text
from mheads.tasks import classification

# smoke: the test's size; bench: the committed tables.
SCALES = {"smoke": {"members": 2, "n": 64, "test": 32, "steps": 3, "batch": 16, "hidden": 16, "lr": 1e-3},
          "bench": {"members": 3, "n": 2048, "test": 512, "steps": 400, "batch": 32, "hidden": 32,
                    "lr": 2e-3}}
CELLS = ("independent", "mcl")


def run_cell(cell: str, s: dict, seed: int) -> dict[str, float]:
    task = classification(2)
    net = train_text.model(s["members"], s["hidden"], seed)
    x, y = text.pack([*text.make(s["n"], seed)])
    xt, yt = text.pack([*text.make(s["test"], seed + 1000)])
    loop.train(net, task, cell, loop.sampled(x, y, s["batch"], seed), steps=s["steps"], lr=s["lr"], seed=seed)
    with torch.no_grad():
        m = task.metrics(net(xt), yt)
    return {"ensemble_acc": 100 * m["ensemble_mean_acc"], "oracle_acc": 100 * m["oracle_acc"],
            "member_acc": 100 * statistics.mean(m["member_acc"]), "nll": m["nll"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="bench")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model on a shared CPU
    s = SCALES[args.scale]
    rows = []
    for seed in args.seeds:
        for cell in args.cells:
            start = time.perf_counter()
            metrics = run_cell(cell, s, seed)
            wall = time.perf_counter() - start
            rows += record.seed_rows("any-task-text", args.scale, "text.make", cell, seed, metrics, wall)
            print(f"seed {seed} {cell}: {metrics} ({wall:.1f} s)", flush=True)
            record.write(args.out, rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
