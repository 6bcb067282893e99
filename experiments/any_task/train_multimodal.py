"""Train a TreeNet of small MLPs on the multimodal regression (example a) with the multiple-hypotheses task
through `mheads.fit(..., task=multi_hypothesis(1))`: independent members against resilient MCL
("mcl_scored"), reporting minADE (`oracle_error`) and the exact 1-D EMD between the weighted hypotheses and
samples of the true p(y | x). Adam is fit's "adamw" without weight decay, at a fixed rate; the run folder
goes to `--out` (a temporary folder if not given). Losses without scoring heads are evaluated with equal
weights (`sweep_multimodal.uniform_scores`), as in the sweep.

    python -m mheads.experiments.any_task.train_multimodal [--scale smoke|bench|full] [--seeds 0 1 2]
        [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from torch import nn

import mheads
from mheads.data.pairs import TensorPairs
from mheads.experiments.any_task import multimodal, record
from mheads.tasks import multi_hypothesis
from mheads.tree import TreeNet

# smoke: seconds on a CPU (the test's size, full batch); bench: sweep_multimodal's "bench" settings, for the
# comparison of fit with the sweep's plain loop; full: a longer run.
SCALES = {
    "smoke": {
        "members": 5,
        "n": 512,
        "batch": 512,
        "steps": 300,
        "width": 32,
        "lr": 1e-2,
        "test": 512,
        "draws": 64,
    },
    "bench": {
        "members": 5,
        "n": 4096,
        "batch": 256,
        "steps": 2000,
        "width": 64,
        "lr": 3e-3,
        "test": 1024,
        "draws": 256,
    },
    "full": {
        "members": 5,
        "n": 8192,
        "batch": 512,
        "steps": 5000,
        "width": 64,
        "lr": 3e-3,
        "test": 2048,
        "draws": 256,
    },
}


def model(members: int, width: int, seed: int) -> TreeNet:
    """Trunk `Linear(1, width)`, per member an MLP to a hypothesis and a score logit: outputs `(M, B, 2)`."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Linear(1, width), nn.Tanh())
    branch = lambda: nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 2))  # noqa: E731
    return TreeNet.from_parts(trunk, branch, members, seed=seed)


def settings(loss: str, s: dict, seed: int) -> dict:
    """fit's settings for one run (Adam at a fixed rate, no evaluation or checkpoint before the end)."""
    return {
        "loss.name": loss,
        "model.members": s["members"],
        "optim.name": "adamw",
        "optim.lr": s["lr"],
        "optim.weight_decay": 0.0,
        "optim.schedule": "fixed",
        "train.iterations": s["steps"],
        "train.batch_size": s["batch"],
        "train.seed": seed,
        "train.eval_every": s["steps"],
        "train.checkpoint_every": s["steps"],
        "train.threads": 1,
    }


def run(loss: str = "mcl_scored", scale: str = "smoke", seed: int = 0, out: str | None = None) -> dict:
    from mheads.experiments.any_task.sweep_multimodal import uniform_scores

    s = SCALES[scale]
    x, y = multimodal.sample(s["n"], seed)
    xt, yt = multimodal.sample(s["test"], seed + 1000)
    with tempfile.TemporaryDirectory() as tmp:
        result = mheads.fit(
            model(s["members"], s["width"], seed),
            TensorPairs(x, y),
            TensorPairs(xt, yt),
            out=out or tmp,
            task=multi_hypothesis(1),
            settings=settings(loss, s, seed),
            progress=False,
            overwrite=out is not None,
        )
        with torch.no_grad():
            outputs = result.tree(xt)
    if loss != "mcl_scored":
        outputs = uniform_scores(outputs)
    samples = multimodal.true_samples(xt, s["draws"], seed + 2000)
    return multi_hypothesis(1).metrics(outputs, yt, samples=samples)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="smoke")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--losses", nargs="+", default=["independent", "mcl_scored"])
    p.add_argument("--out", help="write seeds.csv and results.csv here (cells 'fit:<loss>')")
    args = p.parse_args(argv)
    rows = []
    for seed in args.seeds:
        for loss in args.losses:
            start = time.perf_counter()
            metrics = run(loss, args.scale, seed)
            print(seed, loss, json.dumps(metrics), flush=True)
            metrics.pop("num_examples")
            rows += record.seed_rows(
                "any-task-multimodal-fit",
                args.scale,
                "multimodal.sample",
                f"fit:{loss}",
                seed,
                metrics,
                time.perf_counter() - start,
            )
            if args.out:
                record.write(args.out, rows)


if __name__ == "__main__":
    main()
