"""Train a TreeNet of small fully convolutional nets on the ambiguous shapes (example c): a shared trunk of
two 3x3 convolutions, per member a 3x3 convolution and a 1x1 classifier; the segmentation task (whole-image
MCL, as sMCL) against independent members. Reports pixel accuracy, mean IoU and the
oracle's, on held-out images.

    python -m mheads.experiments.any_task.train_shapes [--scale smoke|full] [--seed 0]
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from mheads.experiments.any_task import loop, shapes
from mheads.tasks import segmentation
from mheads.tree import TreeNet

SCALES = {"smoke": {"members": 3, "n": 64, "test": 32, "steps": 20, "batch": 16, "channels": 8, "lr": 3e-3},
          "full": {"members": 4, "n": 4096, "test": 1024, "steps": 3000, "batch": 64, "channels": 32,
                   "lr": 1e-3}}


def model(members: int, channels: int, seed: int) -> TreeNet:
    """`(B, 1, H, W)` -> `(M, B, 3, H, W)` for any H and W."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(channels, channels, 3, padding=2, dilation=2), nn.ReLU())
    branch = lambda: nn.Sequential(nn.Conv2d(channels, channels, 3, padding=4, dilation=4), nn.ReLU(),  # noqa
                                   nn.Conv2d(channels, len(shapes.CLASSES), 1))
    return TreeNet.from_parts(trunk, branch, members, seed=seed)


def run(loss: str = "mcl", scale: str = "smoke", seed: int = 0) -> dict:
    s = SCALES[scale]
    train, _ = shapes.make(s["n"], seed)
    test, _ = shapes.make(s["test"], seed + 1000)
    task = segmentation(len(shapes.CLASSES), ignore_index=shapes.IGNORE_INDEX)
    net = model(s["members"], s["channels"], seed)
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train, batch_size=s["batch"], shuffle=True, generator=g)
    loop.train(net, task, loss, loop.minibatches(loader), steps=s["steps"], lr=s["lr"], seed=seed)
    out, y = loop.outputs(net, torch.utils.data.DataLoader(test, batch_size=64))
    return task.metrics(out, y)


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
