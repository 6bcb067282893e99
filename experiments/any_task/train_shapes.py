"""Train a TreeNet of small fully convolutional nets on the ambiguous shapes (example c) through
`mheads.fit(..., task=segmentation(3))`: a shared trunk of three 3x3 convolutions (dilations 1, 2, 4), per
member two more (dilations 8, 16) and a 1x1 classifier, so a pixel sees 63 x 63 pixels, the whole image:
telling a square from a disc needs the shape's outline, which a pixel deep inside a large shape does not see
with less (the first version, receptive field 15, labelled the shapes' insides by guess). Independent members
against whole-image MCL (as sMCL) and annealed MCL (`amcl`: MCL's guard against collapse, `GUARD`). Adam is
fit's "adamw" without weight decay, at a fixed rate, one thread. Reports fit's test metrics (pixel accuracy,
mean IoU and the oracle's) and the share of test images each member wins.

    python -m mheads.experiments.any_task.train_shapes [--scale smoke|full] [--seed 0] [--losses ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from typing import Any

import torch
from torch import nn

import mheads
from mheads.experiments.any_task import fitting, shapes
from mheads.tasks import segmentation
from mheads.tree import TreeNet

SCALES = {
    "smoke": {
        "n": 64,
        "test": 32,
        "steps": 20,
        "batch": 16,
        "channels": 8,
        "lr": 3e-3,
        "height": 32,
        "width": 48,
    },
    "full": {
        "n": 1024,
        "test": 256,
        "steps": 400,
        "batch": 32,
        "channels": 12,
        "lr": 3e-3,
        "height": 32,
        "width": 48,
    },
}  # sweep_shapes' "bench" settings at 24 x 36
# Annealed MCL, chosen before any test number of it was seen: T0 = 1, the scale of an image's mean pixel
# cross-entropy at the start (ln 3 = 1.1), annealed to 0 over the first half of training, then plain MCL:
# section a's setting, where it removed the stranded members on every seed.
GUARD = {"loss.temperature": 1.0, "anneal_fraction": 0.5}
TASK = segmentation(len(shapes.CLASSES), ignore_index=shapes.IGNORE_INDEX)


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


def settings(loss: str, s: dict, seed: int) -> dict[str, Any]:
    """fit's settings for one run: the recipe's Adam; 4 evaluations (each logs the training wins of its
    quarter); `amcl` at `GUARD`."""
    out = fitting.adam_settings(loss, s["steps"], s["batch"], s["lr"], seed, evals=min(4, s["steps"]))
    out["train.eval_batch_size"] = 256
    if loss == "amcl":
        out["loss.temperature"] = GUARD["loss.temperature"]
        out["loss.anneal_iterations"] = int(s["steps"] * GUARD["anneal_fraction"])
    return out


def fit(loss: str, members: int, s: dict, seed: int) -> dict[str, Any]:
    """One run on `shapes.make` data of size `s` (train seeded `seed`, test `seed + 1000`): fit's test
    metrics, `member_pixel_acc` averaged, `ambiguous_oracle_pixel_acc` (the oracle on the diamonds alone),
    and the win shares (largest first) `test_win_<r>` (lowest test loss per image) and, for assigning
    losses, `train_win_<r>` (training assignments over the last quarter)."""
    train, _ = shapes.make(s["n"], seed, s["height"], s["width"])
    test, ambiguous = shapes.make(s["test"], seed + 1000, s["height"], s["width"])
    with tempfile.TemporaryDirectory() as tmp:
        result = mheads.fit(
            model(members, s["channels"], seed),
            train,
            test,
            out=tmp,
            task=TASK,
            settings=settings(loss, s, seed),
            progress=False,
        )
        train_wins = fitting.last_train_wins(result.run)
    with torch.no_grad():
        out = result.tree(test.inputs)  # (M, N, 3, H, W)
    metrics = {k: result.metrics[k] for k in ("pixel_acc", "mean_iou", "oracle_mean_iou", "oracle_pixel_acc")}
    metrics["member_pixel_acc"] = statistics.mean(result.metrics["member_pixel_acc"])
    amb = TASK.metrics(out[:, ambiguous], test.targets[ambiguous]) if bool(ambiguous.any()) else None
    metrics["ambiguous_oracle_pixel_acc"] = amb["oracle_pixel_acc"] if amb else float("nan")
    test_wins = fitting.win_shares(TASK.member_losses(out, test.targets))
    metrics.update({f"test_win_{r + 1}": v for r, v in enumerate(test_wins)})
    metrics.update({f"train_win_{r + 1}": v for r, v in enumerate(train_wins or [])})
    return metrics


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="smoke")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--losses", nargs="+", default=["independent", "mcl", "amcl"])
    args = p.parse_args(argv)
    for loss in args.losses:
        print(loss, json.dumps(fit(loss, args.members, SCALES[args.scale], args.seed)), flush=True)


if __name__ == "__main__":
    main()
