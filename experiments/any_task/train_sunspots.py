"""Train a TreeNet forecaster on the yearly sunspots (example b) through `mheads.fit(..., task=...)`: a shared
1-D convolution trunk over the input window, a head per member; point regression of the next `t_out` years,
independent members against MCL. Adam is fit's "adamw" without weight decay, at a fixed rate, one thread.
Reports the test RMSE of the mean forecast and the oracle's (both in sunspot numbers, not normalised).

    python -m mheads.experiments.any_task.train_sunspots [--scale smoke|full] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch
from torch import nn

import mheads
from mheads.data.pairs import TensorPairs
from mheads.experiments.any_task import fitting, sunspots
from mheads.tasks import Task, regression
from mheads.tree import TreeNet

SCALES = {
    "smoke": {
        "members": 4,
        "t_in": 24,
        "t_out": 4,
        "test_years": 60,
        "steps": 200,
        "batch": 64,
        "channels": 16,
        "lr": 3e-3,
    },
    "full": {
        "members": 8,
        "t_in": 32,
        "t_out": 8,
        "test_years": 60,
        "steps": 4000,
        "batch": 64,
        "channels": 32,
        "lr": 1e-3,
    },
}


def model(members: int, t_in: int, t_out: int, channels: int, seed: int, width: int | None = None) -> TreeNet:
    """`(B, 1, t_in)` -> `(M, B, width)`, `width` = `t_out` unless given (a task's `head_width()`: Gaussian
    heads, scores)."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(
        nn.Conv1d(1, channels, 5, padding=2),
        nn.ReLU(),
        nn.Conv1d(channels, channels, 5, padding=2),
        nn.ReLU(),
        nn.Flatten(),
    )
    branch = lambda: nn.Sequential(nn.Linear(channels * t_in, 64), nn.ReLU(), nn.Linear(64, width or t_out))  # noqa
    return TreeNet.from_parts(trunk, branch, members, seed=seed)


def fit(task: Task, loss: str, members: int, s: dict, seed: int, splits: dict[str, TensorPairs]) -> TreeNet:
    """`model` (`members` heads of `task.head_width()` outputs) trained by `loss` on `splits["train"]` through
    `mheads.fit` (the recipe's Adam, `s["steps"]` batches of `s["batch"]` windows); the trained TreeNet."""
    net = model(members, s["t_in"], s["t_out"], s["channels"], seed, task.head_width())
    with tempfile.TemporaryDirectory() as tmp:
        result = mheads.fit(
            net,
            splits["train"],
            splits["test"],
            out=tmp,
            task=task,
            settings=fitting.adam_settings(loss, s["steps"], s["batch"], s["lr"], seed),
            progress=False,
        )
    return result.tree


def run(loss: str = "mcl", scale: str = "smoke", seed: int = 0) -> dict:
    s = SCALES[scale]
    splits, stats = sunspots.load(s["t_in"], s["t_out"], s["test_years"])
    task = regression(s["t_out"])
    tree = fit(task, loss, s["members"], s, seed, splits)
    test = splits["test"]
    with torch.no_grad():
        out = tree(test.inputs)  # (M, N, t_out), normalised units
    metrics = task.metrics(out * stats["std"] + stats["mean"], test.targets * stats["std"] + stats["mean"])
    return {**metrics, "split_year": stats["split_year"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="smoke")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model: thread wake-ups cost more than they save
    for loss in ("independent", "mcl"):
        print(loss, json.dumps(run(loss, args.scale, args.seed)))


if __name__ == "__main__":
    main()
