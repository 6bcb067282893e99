"""scripts/dead_class_scores.py: a class score that never varies is found, and the table is printed for every
finished run of a sweep."""

import json

import dead_class_scores as dcs
import pytest
import torch

from mheads.cli import main

SMALL = (
    "model: {members: 3}\ndata: {train_limit: 64, test_limit: 40}\n"
    "train: {iterations: 2, batch_size: 8, eval_every: 0, checkpoint_every: 0}\n"
)


def test_a_constant_logit_is_a_dead_class_and_only_that_member_has_it():
    logits = torch.randn(3, 50, 4)
    logits[1, :, 2] = 0.0  # member 1's class 2 died behind a ReLU
    logits[2, :, 0] = 1.5  # any constant, not only zero
    assert dcs.dead_classes(logits) == [[], [2], [0]]


def test_a_class_no_example_ranks_first_is_never_predicted():
    logits = torch.zeros(2, 3, 3)
    logits[0, :, 1] = 5.0  # member 0 always says class 1
    logits[1, [0, 1, 2], [0, 1, 2]] = 5.0  # member 1 says each class once
    assert dcs.never_predicted(logits, 3) == [[0, 2], []]


def test_subset_ensemble_mean_averages_only_the_chosen_members():
    labels = torch.tensor([0, 1])
    logits = torch.tensor(
        [
            [[9.0, 0.0], [0.0, 9.0]],  # member 0: both right
            [[0.0, 9.0], [9.0, 0.0]],  # member 1: both wrong
            [[9.0, 0.0], [0.0, 9.0]],
        ]
    )  # member 2: both right
    assert dcs.ensemble_mean_acc(logits, labels, [1]) == 0.0
    assert dcs.ensemble_mean_acc(logits, labels, [0, 2]) == 1.0


def test_the_table_covers_every_finished_run_of_the_seed(tmp_path, monkeypatch, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(SMALL)
    for cell in ("a", "b"):
        assert (
            main(
                [
                    "train",
                    "--config",
                    str(config),
                    "--out",
                    str(tmp_path / "sweep" / "seed-0" / cell),
                    "--no-progress",
                ]
            )
            == 0
        )
    (tmp_path / "sweep" / "seed-0" / "unfinished").mkdir()
    capsys.readouterr()
    monkeypatch.setattr("sys.argv", ["dead_class_scores.py", str(tmp_path / "sweep"), "--members", "0,2"])
    dcs.main()
    out = capsys.readouterr().out.splitlines()
    rows = json.loads(out[-1])
    assert [r["run"] for r in rows] == ["a", "b"]
    assert all(len(r["member_acc"]) == 3 and r["subset"] == [0, 2] for r in rows)
    assert out[2].startswith("| a | ") and out[3].startswith("| b | ")


def test_a_member_the_runs_lack_is_refused(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text(SMALL)
    assert (
        main(
            ["train", "--config", str(config), "--out", str(tmp_path / "s" / "seed-0" / "a"), "--no-progress"]
        )
        == 0
    )
    monkeypatch.setattr("sys.argv", ["dead_class_scores.py", str(tmp_path / "s"), "--members", "0,5"])
    with pytest.raises(SystemExit, match=r"--members: got \[5\]"):
        dcs.main()
