"""Ambiguous-shapes segmentation (issue 32, example c) over seeds and ensemble sizes: oracle mean IoU against
M for independent members and whole-image MCL (k = 1), sMCL's finding (Lee et al. NeurIPS 2016, section 5).
Writes `seeds.csv` and `results.csv` to `--out`; `figures.py shapes` draws oracle IoU against M.

Cells "<loss>_M<M>": the TreeNet of `train_shapes.model` with M members trained by "independent" or "mcl"
(M = 1 is one cell, "independent_M1": MCL with one member is the same loss). Images `height` x `width`, not
square; a diamond (30% of images) is labelled square or disc by a coin flip per image, so one prediction is
right on at most half of them, while two members that commit to different labels give an oracle right on all.
Metrics on held-out images: pixel accuracy and mean IoU of the members' mean probabilities, the oracle's
(per image its best member), the members' mean pixel accuracy, and the oracle's pixel accuracy on the
ambiguous images alone.

    python -m mheads.experiments.any_task.sweep_shapes --out experiments/results/any-task-shapes-cpu
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mheads.experiments.any_task import loop, record, shapes, train_shapes
from mheads.tasks import segmentation

# smoke: the test's size; bench: the committed tables.
SCALES = {
    "smoke": {
        "n": 32,
        "test": 16,
        "steps": 3,
        "batch": 8,
        "channels": 4,
        "lr": 3e-3,
        "height": 16,
        "width": 24,
    },
    "bench": {
        "n": 1024,
        "test": 256,
        "steps": 400,
        "batch": 32,
        "channels": 12,
        "lr": 3e-3,
        "height": 24,
        "width": 36,
    },
}
CELLS = ("independent_M1", "independent_M2", "mcl_M2", "independent_M4", "mcl_M4")


def run_cell(cell: str, s: dict, seed: int) -> dict[str, float]:
    loss, members = cell.rsplit("_M", 1)
    train, _ = shapes.make(s["n"], seed, s["height"], s["width"])
    test, ambiguous = shapes.make(s["test"], seed + 1000, s["height"], s["width"])
    task = segmentation(len(shapes.CLASSES), ignore_index=shapes.IGNORE_INDEX)
    net = train_shapes.model(int(members), s["channels"], seed)
    loop.train(
        net,
        task,
        loss,
        loop.sampled(train.inputs, train.targets, s["batch"], seed),
        steps=s["steps"],
        lr=s["lr"],
        seed=seed,
    )
    with torch.no_grad():
        out = net(test.inputs)
    m = task.metrics(out, test.targets)
    amb = task.metrics(out[:, ambiguous], test.targets[ambiguous]) if bool(ambiguous.any()) else None
    return {
        "pixel_acc": m["pixel_acc"],
        "mean_iou": m["mean_iou"],
        "oracle_mean_iou": m["oracle_mean_iou"],
        "oracle_pixel_acc": m["oracle_pixel_acc"],
        "member_pixel_acc": statistics.mean(m["member_pixel_acc"]),
        "ambiguous_oracle_pixel_acc": amb["oracle_pixel_acc"] if amb else float("nan"),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="bench")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # small convolutions on a shared CPU
    s = SCALES[args.scale]
    rows = []
    for seed in args.seeds:
        for cell in args.cells:
            start = time.perf_counter()
            metrics = run_cell(cell, s, seed)
            wall = time.perf_counter() - start
            rows += record.seed_rows("any-task-shapes", args.scale, "shapes.make", cell, seed, metrics, wall)
            print(f"seed {seed} {cell}: {metrics} ({wall:.1f} s)", flush=True)
            record.write(args.out, rows)  # after every cell: a partial sweep still leaves its tables
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
