"""What the sunspots and shapes examples share to train through fit: their settings, the win shares (known
answers) and the training wins read back from a run folder's eval.jsonl."""

import json

import pytest
import torch

from mheads.config import config_from_settings
from mheads.experiments.any_task import fitting


def test_adam_settings_are_a_valid_config_with_the_recipe():
    s = fitting.adam_settings("mcl", steps=400, batch=32, lr=3e-3, seed=2, evals=4)
    cfg = config_from_settings(s)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.schedule) == (
        "adamw",
        3e-3,
        0.0,
        "fixed",
    )
    assert (cfg.train.iterations, cfg.train.batch_size, cfg.train.seed, cfg.train.threads) == (400, 32, 2, 1)
    assert (cfg.train.eval_every, cfg.train.checkpoint_every, cfg.loss.name) == (100, 400, "mcl")
    with pytest.raises(ValueError, match=r"evals: got 5; expected an integer in 1\.\.4"):
        fitting.adam_settings("mcl", steps=4, batch=1, lr=1.0, seed=0, evals=5)


def test_win_shares_count_each_examples_lowest_loss_largest_first():
    losses = torch.tensor([[0.1, 0.9, 0.5, 0.2, 0.3], [0.2, 0.1, 0.4, 0.3, 0.4], [0.3, 0.8, 0.6, 0.1, 0.2]])
    # winners: 0, 1, 1, 2, 2 -> member 0 one of five, members 1 and 2 two each
    assert fitting.win_shares(losses) == [0.4, 0.4, 0.2]
    assert fitting.win_shares(torch.tensor([[0.0, 0.0], [1.0, 2.0]])) == [1.0, 0.0]  # collapsed
    with pytest.raises(ValueError, match=r"member_losses: got shape \(3,\); expected \(M, B\)"):
        fitting.win_shares(torch.zeros(3))


def test_last_train_wins_reads_the_last_evaluation(tmp_path):
    records = [{"step": 1, "win_fraction": [0.5, 0.5]}, {"step": 2, "win_fraction": [0.25, 0.75]}]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert fitting.last_train_wins(tmp_path) == [0.75, 0.25]
    (tmp_path / "eval.jsonl").write_text(json.dumps({"step": 2, "mean_iou": 0.5}) + "\n")
    assert fitting.last_train_wins(tmp_path) is None  # independent members: nothing assigned
