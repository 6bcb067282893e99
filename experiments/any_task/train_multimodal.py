"""Train a TreeNet of small MLPs on the multimodal regression (example a) with the multiple-hypotheses task:
independent members against resilient MCL ("mcl_scored"), reporting minADE (`oracle_error`) and the exact 1-D
EMD between the score-weighted hypotheses and samples of the true p(y | x).

    python -m mheads.experiments.any_task.train_multimodal [--scale smoke|full] [--seed 0]
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from mheads.experiments.any_task import loop, multimodal
from mheads.tasks import multi_hypothesis
from mheads.tree import TreeNet

# smoke: seconds on a CPU (the test's size); full: the settings for a figure (a minute or two on a CPU).
SCALES = {"smoke": {"members": 5, "n": 512, "steps": 300, "width": 32, "lr": 1e-2, "test": 512, "draws": 64},
          "full": {"members": 5, "n": 8192, "steps": 5000, "width": 64, "lr": 3e-3, "test": 2048,
                   "draws": 256}}


def model(members: int, width: int, seed: int) -> TreeNet:
    """Trunk `Linear(1, width)`, per member an MLP to a hypothesis and a score logit: outputs `(M, B, 2)`."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Linear(1, width), nn.Tanh())
    branch = lambda: nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 2))  # noqa: E731
    return TreeNet.from_parts(trunk, branch, members, seed=seed)


def run(loss: str = "mcl_scored", scale: str = "smoke", seed: int = 0) -> dict:
    s = SCALES[scale]
    task = multi_hypothesis(1)
    x, y = multimodal.sample(s["n"], seed)
    net = model(s["members"], s["width"], seed)
    loop.train(net, task, loss, loop.repeat(x, y), steps=s["steps"], lr=s["lr"], seed=seed)
    xt, yt = multimodal.sample(s["test"], seed + 1000)
    with torch.no_grad():
        out = net(xt)
    return task.metrics(out, yt, samples=multimodal.true_samples(xt, s["draws"], seed + 2000))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="smoke")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model: thread wake-ups cost more than they save
    for loss in ("independent", "mcl_scored"):
        print(loss, json.dumps(run(loss, args.scale, args.seed)))


if __name__ == "__main__":
    main()
