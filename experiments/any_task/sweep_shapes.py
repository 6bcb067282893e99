"""Ambiguous-shapes segmentation (issue 32, example c) over seeds and ensemble sizes, through `mheads.fit`:
oracle mean IoU against M for independent members and whole-image MCL (k = 1), sMCL's finding (Lee et al.
NeurIPS 2016, section 5). Writes `seeds.csv` and `results.csv` to `--out`; `figures.py shapes` draws oracle
IoU against M.

Cells "<loss>_M<M>": the TreeNet of `train_shapes.model` with M members trained by "independent", plain "mcl"
or annealed MCL ("amcl" at `train_shapes.GUARD`: MCL with a guard against one member winning every image);
M = 1 is one cell, "independent_M1" (every assigning loss with one member is the same loss). Images
`height` x `width`, not square; a diamond (30% of images) is labelled square or disc by a coin flip per image,
so one prediction is right on at most half of them, while two members that commit to different labels give an
oracle right on all. Metrics on held-out images (`train_shapes.fit`): pixel accuracy and mean IoU of the
members' mean probabilities, the oracle's (per image its best member), the members' mean pixel accuracy, the
oracle's pixel accuracy on the ambiguous images alone, and the win shares, largest first: `test_win_<r>`
(the share of test images on which a member has the lowest loss) and `train_win_<r>` (the training
assignments of the last quarter of training; assigning losses only). A share near 1 is a collapse.

    python -m mheads.experiments.any_task.sweep_shapes --out experiments/results/any-task-shapes-fit-cpu
"""

from __future__ import annotations

import argparse
import time

import torch

from mheads.experiments.any_task import record, train_shapes

# smoke: the test's size; bench: the committed tables.
SCALES = {
    "smoke": {
        "n": 32,
        "test": 16,
        "steps": 4,
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
CELLS = ("independent_M1", "independent_M2", "amcl_M2", "independent_M4", "amcl_M4", "mcl_M2", "mcl_M4")


def run_cell(cell: str, s: dict, seed: int) -> dict[str, float]:
    loss, members = cell.rsplit("_M", 1)
    return train_shapes.fit(loss, int(members), s, seed)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="bench")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    p.add_argument("--out", required=True)
    p.add_argument("--append", action="store_true", help="add to --out's seeds.csv instead of replacing it")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # small convolutions on a shared CPU (fit also runs with train.threads 1)
    s = SCALES[args.scale]
    rows = record.read(f"{args.out}/seeds.csv") if args.append else []
    for seed in args.seeds:
        for cell in args.cells:
            start = time.perf_counter()
            metrics = run_cell(cell, s, seed)
            wall = time.perf_counter() - start
            rows += record.seed_rows(
                "any-task-shapes-fit", args.scale, "shapes.make", cell, seed, metrics, wall
            )
            print(f"seed {seed} {cell}: {metrics} ({wall:.1f} s)", flush=True)
            record.write(args.out, rows)  # after every cell: a partial sweep still leaves its tables
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
