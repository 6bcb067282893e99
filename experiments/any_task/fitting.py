"""What the sunspots and shapes examples share to train through `mheads.fit`: the settings of their recipe
(Adam at a fixed rate, one thread) and the share of examples each member wins (the collapse diagnostic)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mheads.core.checks import check_int


def adam_settings(loss: str, steps: int, batch: int, lr: float, seed: int, evals: int = 1) -> dict[str, Any]:
    """fit's settings for `steps` Adam updates of `batch` examples at a fixed `lr` (fit's "adamw" without
    weight decay), one thread, evaluated `evals` times (every `steps // evals` iterations: each evaluation
    logs the training `win_fraction` since the previous one) and checkpointed at the end only."""
    check_int("evals", evals, 1, steps)
    return {
        "loss.name": loss,
        "optim.name": "adamw",
        "optim.lr": lr,
        "optim.weight_decay": 0.0,
        "optim.schedule": "fixed",
        "train.iterations": steps,
        "train.batch_size": batch,
        "train.seed": seed,
        "train.eval_every": steps // evals,
        "train.checkpoint_every": steps,
        "train.threads": 1,
    }


def win_shares(member_losses: torch.Tensor) -> list[float]:
    """`member_losses: (M, B)` -> the share of the B examples each member has the lowest loss on (the member
    MCL with k = 1 assigns them to), sorted from the largest share down (member order is arbitrary), so that
    shares from several seeds average; a collapsed ensemble reads `[1.0, 0.0, ...]`."""
    if member_losses.ndim != 2 or member_losses.shape[1] == 0:
        raise ValueError(f"member_losses: got shape {tuple(member_losses.shape)}; expected (M, B), B >= 1")
    wins = torch.bincount(member_losses.argmin(dim=0), minlength=member_losses.shape[0])
    return sorted((wins.double() / member_losses.shape[1]).tolist(), reverse=True)


def last_train_wins(run: str | Path) -> list[float] | None:
    """The training `win_fraction` of a run folder's last evaluation (the iterations since the one before),
    sorted from the largest share down; None for a loss that assigns nothing (independent members)."""
    lines = Path(run, "eval.jsonl").read_text().splitlines()
    shares = json.loads(lines[-1]).get("win_fraction") if lines else None
    return None if shares is None else sorted(shares, reverse=True)
