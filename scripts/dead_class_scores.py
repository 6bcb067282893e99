"""Dead class scores in a finished sweep. For each run of one seed: each member's classes whose logit is the
same for every test image (a class score that died, e.g. behind NiN's ReLU before its global average pool),
the classes it never predicts (a score that is dead on nearly every image), each member's accuracy, and the
ensemble-mean accuracy (probabilities averaged) of all members and of a fixed subset of them, so that cells
can be compared without a member that lost a class.

    python scripts/dead_class_scores.py runs/table2-nin-cpu [--seed 0] [--members 0,1,3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mheads.ensemble.metrics import ensemble_mean_accuracy, member_accuracy
from mheads.infer.evaluate import load_for_eval
from mheads.train.analysis import collect_logits


def member_logits(run: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``(logits (M, N, C), labels (N,), class names)`` of a run on its test split."""
    cfg, tree, data = load_for_eval(run)
    logits, labels = collect_logits(tree, data, "test", cfg.train.eval_batch_size)
    return logits, labels, list(data.classes)


def dead_classes(logits: torch.Tensor) -> list[list[int]]:
    """Per member, the classes whose logit does not vary over the examples of ``logits`` (M, N, C)."""
    spread = logits.amax(dim=1) - logits.amin(dim=1)  # (M, C)
    return [torch.nonzero(row == 0).flatten().tolist() for row in spread]


def never_predicted(logits: torch.Tensor, num_classes: int) -> list[list[int]]:
    """Per member, the classes that are never its top-1 prediction over the examples of ``logits``."""
    return [sorted(set(range(num_classes)) - set(row.argmax(dim=-1).tolist())) for row in logits]


def ensemble_mean_acc(logits: torch.Tensor, labels: torch.Tensor, members: list[int]) -> float:
    """Ensemble-mean accuracy (probabilities averaged) of the ``members`` of ``logits`` (M, N, C)."""
    return ensemble_mean_accuracy(logits[members], labels)


def _text(per_member: list[list[int]], names: list[str]) -> str:
    return (
        "; ".join(f"member {m}: {', '.join(names[c] for c in cs)}" for m, cs in enumerate(per_member) if cs)
        or "none"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--members", default="", help="comma-separated member indices for the subset ensemble")
    args = p.parse_args()
    runs = sorted(r.parent for r in (args.sweep / f"seed-{args.seed}").glob("*/metrics.json"))
    if not runs:
        raise SystemExit(f"sweep: no finished run (metrics.json) under {args.sweep / f'seed-{args.seed}'}")
    subset = [int(m) for m in args.members.split(",") if m.strip()]
    rows = []
    print(
        "| run | member accuracy (%) | dead class scores | never predicted | ensemble-mean (%) "
        "| subset ensemble-mean (%) |"
    )
    print("|---|---|---|---|---:|---:|")
    for run in runs:
        logits, labels, names = member_logits(run)
        members = list(range(logits.shape[0]))
        bad = [m for m in subset if m not in members]
        if bad:
            raise SystemExit(f"--members: got {bad}; {run} has members 0..{len(members) - 1}")
        accs = member_accuracy(logits, labels).tolist()
        dead, unseen = dead_classes(logits), never_predicted(logits, logits.shape[-1])
        full = ensemble_mean_acc(logits, labels, members)
        part = ensemble_mean_acc(logits, labels, subset) if subset else None
        rows.append(
            {
                "run": run.name,
                "member_acc": accs,
                "dead_classes": [[names[c] for c in cs] for cs in dead],
                "never_predicted": [[names[c] for c in cs] for cs in unseen],
                "ensemble_mean_acc": full,
                "subset": subset,
                "subset_ensemble_mean_acc": part,
            }
        )
        print(
            f"| {run.name} | {' / '.join(f'{100 * a:.2f}' for a in accs)} | {_text(dead, names)} | "
            f"{_text(unseen, names)} | "
            f"{100 * full:.2f} | {'' if part is None else f'{100 * part:.2f}'} |"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
