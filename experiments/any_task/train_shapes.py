"""Train a TreeNet of small fully convolutional nets on the ambiguous shapes (example c): a shared trunk of
three 3x3 convolutions (dilations 1, 2, 4), per member two more (dilations 8, 16) and a 1x1 classifier, so a
pixel sees 63 x 63 pixels, the whole image: telling a square from a disc needs the shape's outline, which a
pixel deep inside a large shape does not see with less (the first version, receptive field 15, labelled the
shapes' insides by guess). The segmentation task (whole-image MCL, as sMCL) against independent members.
Reports pixel accuracy, mean IoU and the oracle's, on held-out images.

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

SCALES = {
    "smoke": {"members": 3, "n": 64, "test": 32, "steps": 20, "batch": 16, "channels": 8, "lr": 3e-3},
    "full": {"members": 4, "n": 1024, "test": 256, "steps": 400, "batch": 32, "channels": 12, "lr": 3e-3},
}  # sweep_shapes' "bench" settings


def model(members: int, channels: int, seed: int) -> TreeNet:
    """`(B, 1, H, W)` -> `(M, B, 3, H, W)` for any H and W."""
    torch.manual_seed(seed)

    def conv(dilation: int) -> list[nn.Module]:
        return [
            nn.Conv2d(1 if dilation == 1 else channels, channels, 3, padding=dilation, dilation=dilation),
            nn.ReLU(),
        ]

    trunk = nn.Sequential(*conv(1), *conv(2), *conv(4))
    branch = lambda: nn.Sequential(*conv(8), *conv(16), nn.Conv2d(channels, len(shapes.CLASSES), 1))  # noqa
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
