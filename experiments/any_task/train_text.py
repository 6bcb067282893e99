"""Train an ensemble of tiny BERT classifiers (example d) on the token-pattern task: a TreeNet of independent
members (`split=None`: each member runs the HF model's own forward, `output="logits"` picks
`ModelOutput.logits`), the classification task, independent training against MCL. Reports the task's metrics.

TreeNet's forward reads `x.device`, so it takes a tensor, not the batch dict: the loader packs each batch
dict into `(B, 2, T)` (`text.pack`) and `text.PackedInput` unpacks it for the model.

    python -m mheads.experiments.any_task.train_text [--scale smoke|full] [--seed 0]
"""

from __future__ import annotations

import argparse
import json

import torch

from mheads.experiments.any_task import loop, text
from mheads.tasks import classification
from mheads.tree import TreeNet

SCALES = {"smoke": {"members": 2, "n": 128, "test": 64, "steps": 20, "batch": 32, "hidden": 32, "lr": 1e-3},
          "full": {"members": 4, "n": 8192, "test": 2048, "steps": 3000, "batch": 64, "hidden": 64,
                   "lr": 5e-4}}


def model(members: int, hidden: int, seed: int) -> TreeNet:
    """`{"input_ids": (B, T), "attention_mask": (B, T)}` -> logits `(M, B, 2)`."""
    return TreeNet(lambda: text.PackedInput(text.tiny_bert(hidden).model), members, None, seed=seed,
                   output="logits")


def run(loss: str = "mcl", scale: str = "smoke", seed: int = 0) -> dict:
    s = SCALES[scale]
    task = classification(2)
    net = model(s["members"], s["hidden"], seed)
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(text.make(s["n"], seed), batch_size=s["batch"], shuffle=True,
                                         generator=g, collate_fn=text.pack)
    loop.train(net, task, loss, loop.minibatches(loader), steps=s["steps"], lr=s["lr"], seed=seed)
    out, y = loop.outputs(net, torch.utils.data.DataLoader(text.make(s["test"], seed + 1000), batch_size=64,
                                                             collate_fn=text.pack))
    return task.metrics(out, y)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="smoke")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model: thread wake-ups cost more than they save
    for loss in ("independent_ce", "mcl"):  # classification's names are compute_loss's
        print(loss, json.dumps(run(loss, args.scale, args.seed)))


if __name__ == "__main__":
    main()
