"""Train an ensemble of tiny BERT classifiers (example d) on the ambiguous token-pattern task through
`mheads.fit`: the HF model is the base (`split=None`: each member runs its own forward on the batch dict
`{input_ids, attention_mask}`), `model.output: logits` picks `ModelOutput.logits`, classification over
`text.CLASSES`. With `shared`, the members share one BERT instead (`text.bert_trunk`, run once per batch:
`head="task"`, `model.split: output`, `model.output: pooler_output`) and each has its own `Linear` head, so
a member computes what a `BertForSequenceClassification` computes. Adam is fit's "adamw" without weight
decay, at a fixed rate, one thread; evaluation and the one checkpoint at the end. Reports fit's test
metrics, two on the test set's parts (`parts`), the test win shares (`wins`) and the parameter count.

    python -m mheads.experiments.any_task.train_text [--scale smoke|bench] [--seed 0]
        [--losses independent_ce mcl mcl_ce rwta] [--shared]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

import torch
import torch.nn.functional as F

import mheads
from mheads.experiments.any_task import fitting, text

# smoke: the test's size (seconds); bench: the committed tables (about 10 s a run on one CPU thread).
SCALES = {
    "smoke": {"members": 2, "n": 64, "test": 32, "steps": 4, "batch": 16, "hidden": 16, "lr": 2e-3},
    "bench": {"members": 3, "n": 2048, "test": 512, "steps": 300, "batch": 32, "hidden": 32, "lr": 2e-3},
}


def settings(loss: str, s: dict, seed: int) -> dict:
    """fit's settings for one run (classification's loss names: independent_ce, mcl, mcl_ce, rwta, ...)."""
    return {
        "model.output": "logits",
        "model.members": s["members"],
        "loss.name": loss,
        "loss.k": 1,
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


# the members share one BERT, each its own Linear head on the pooler's output (fit's `head="task"`)
SHARED = {"model.split": "output", "model.output": "pooler_output", "model.pool": "none"}


def parts(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """`logits: (M, B, C)`, `labels: (B,)` -> in %, the ensemble's (mean probabilities) accuracy on the
    unambiguous sequences (labels 0 and 1) and the oracle's on the ambiguous ones (labels 2 and 3): what one
    model can get right, and what only members that answer differently can."""
    clear = labels < 2
    ensemble = logits.softmax(-1).mean(0).argmax(-1)  # (B,)
    oracle = (logits.argmax(-1) == labels).any(0)  # (B,)
    return {
        "clear_ensemble_acc": 100 * ensemble[clear].eq(labels[clear]).float().mean().item(),
        "ambiguous_oracle_acc": 100 * oracle[~clear].float().mean().item(),
    }


def wins(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """`logits: (M, B, C)`, `labels: (B,)` -> `test_win_<r>`: the share of the sequences each member has the
    lowest cross-entropy on (the member MCL with k = 1 would train on them), largest first (1.0: one member
    wins every sequence)."""
    nll = F.cross_entropy(logits.transpose(1, 2), labels.expand(len(logits), -1), reduction="none")  # (M, B)
    return {f"test_win_{r + 1}": v for r, v in enumerate(fitting.win_shares(nll))}


def run(
    loss: str = "mcl", scale: str = "smoke", seed: int = 0, out: str | None = None, shared: bool = False
) -> dict[str, float]:
    """One fit: its test metrics in % (`ensemble_acc`, `oracle_acc`, `member_acc`: the members' mean), `nll`,
    `parts`, `wins` and `params_k` (the ensemble's parameters in thousands, a shared trunk counted once)."""
    s = SCALES[scale]
    train, test = text.make(s["n"], seed), text.make(s["test"], seed + 1000)
    base = text.bert_trunk if shared else text.tiny_bert
    with tempfile.TemporaryDirectory() as tmp:
        result = mheads.fit(
            lambda: base(s["hidden"]),
            train,
            test,
            out=out or tmp,
            task="classification",
            head="task" if shared else None,
            settings={**settings(loss, s, seed), **(SHARED if shared else {})},
            progress=False,
            overwrite=out is not None,
        )
        with torch.no_grad():
            logits = result.tree({"input_ids": test.ids, "attention_mask": test.mask})  # (M, B, C)
    m = result.metrics
    return {
        "ensemble_acc": 100 * m["ensemble_mean_acc"],
        "oracle_acc": 100 * m["oracle_acc"],
        "member_acc": 100 * statistics.mean(m["member_acc"]),
        "nll": m["nll"],
        **parts(logits, test.labels),
        **wins(logits, test.labels),
        "params_k": m["param_counts"]["total"] / 1000,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="smoke")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--losses", nargs="+", default=["independent_ce", "mcl"])
    p.add_argument("--shared", action="store_true", help="the members share one BERT trunk (a head each)")
    args = p.parse_args(argv)
    for loss in args.losses:
        print(loss, json.dumps(run(loss, args.scale, args.seed, shared=args.shared)), flush=True)


if __name__ == "__main__":
    main()
