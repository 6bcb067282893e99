"""The command line's happy paths, as a user runs them: train, eval, plot, list-models, shard.

Each command runs in this process through ``mheads.cli.main(argv)`` (what ``python -m mheads`` calls), so
the checks see its exit code and output without paying for a fresh interpreter that imports torch; the real
entry point's process boundary is covered by ``test_cli_hardening.py`` (a closed pipe, SIGTERM while
starting) and the fork-server tests."""

import contextlib
import io
import json
import shlex

import pytest
import yaml

from mheads.cli import main

TINY = {
    "model": {"name": "cifar10_quick", "members": 2, "split": "conv1"},
    "loss": {"name": "mcl", "k": 1},
    "data": {"train_limit": 128, "test_limit": 100},
    "train": {"iterations": 3, "batch_size": 16, "eval_every": 3, "checkpoint_every": 0, "threads": 1},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    run = tmp / "run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):  # capsys is per test; the run is trained once per module
        code = main(["train", "--config", str(cfg), "--out", str(run), "--set", "optim.lr=0.005"])
    assert code == 0, stdout.getvalue()
    return run, stdout.getvalue()


def test_train_prints_the_summary_and_writes_the_run(trained):
    run, stdout = trained
    assert "ensemble-mean" in stdout and "oracle" in stdout
    assert (run / "metrics.json").exists() and (run / "members/member_1.safetensors").exists()
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"] == 0.005  # --set is recorded


def test_eval_reproduces_the_final_metrics(trained, capsys):
    run, _ = trained
    assert main(["eval", "--run", str(run)]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads((run / "metrics.json").read_text())
    assert last["ensemble_mean_acc"] == saved["ensemble_mean_acc"]
    assert last["member_acc"] == saved["member_acc"]


def test_plot_writes_heatmap_and_curves(trained):
    run, stdout = trained
    where, command = stdout.splitlines()[-1].split("; draw its plots with: ")  # train's last line says how
    assert where == f"run written to {run}" and command == f"mheads plot {run}"
    assert main(shlex.split(command)[1:]) == 0
    for name in ("assignment.png", "curves.png"):
        png = run / "plots" / name
        assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"


def test_list_models_names_split_points(capsys):
    assert main(["list-models"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("cifar10_quick"))
    assert "conv1, conv2, conv3, ip1, ip2" in line
    assert "cccp1" in out and "fc6" in out


def test_shard_then_stream_from_the_shards(tmp_path, capsys):
    from mheads.data.shards import write_varied_folder

    folder = write_varied_folder(tmp_path / "photos", 24, 8, 3, sizes=(20, 36), seed=4)
    assert main(["shard", str(folder), str(tmp_path / "shards"), "--per-shard", "10"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 4 shards to {tmp_path / 'shards'}"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "data": {"source": str(tmp_path / "shards"), "image_size": 16}}))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["data"]["loader"] == "stream"
    capsys.readouterr()
    assert main(["shard", str(folder), str(tmp_path / "x"), "--per-shard", "0"]) == 2
    assert "--per-shard: got 0; expected an integer >= 1" in capsys.readouterr().err


NO_HELD_OUT = "temperature scaling and the uncertainty report skipped: no held-out split"


def test_a_note_every_demo_cell_repeats_is_said_once_per_command(monkeypatch, tmp_path, caplog):
    """The demo trains a run per cell, and each said "no held-out split": the command says it once."""
    from types import SimpleNamespace

    import mheads.cli.demo as demo
    from mheads.train.finish import _uncertainty

    cell = SimpleNamespace(comm=SimpleNamespace(world_size=1, is_root=True))
    cell.data = SimpleNamespace(split_size=lambda split: 0)  # a cell's run without held-out or OOD images

    def three_cells(out, recipe=None, overrides=()):
        return [_uncertainty(cell) for _ in range(3)]

    monkeypatch.setattr(demo, "run_demo", three_cells)
    caplog.set_level("INFO", logger="mheads")
    for _ in range(2):  # once per command, each command
        assert main(["demo", "--out", str(tmp_path)]) == 0
    assert [r.getMessage().startswith(NO_HELD_OUT) for r in caplog.records].count(True) == 2


@pytest.mark.slow
def test_the_demo_says_the_no_held_out_note_once(tmp_path, capsys, caplog):
    spec = {
        "title": "two tiny cells",
        "base": {**TINY, "model": {"name": "cifar10_quick", "members": 2}},
        "cells": {"a": {"row": "a"}, "b": {"row": "b", "config": {"model": {"split": "conv1"}}}},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    caplog.set_level("INFO", logger="mheads")
    assert main(["demo", "--config", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "demo")]) == 0
    said = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith(NO_HELD_OUT) for m in said) == 1
    assert sum("iteration 3/3" in m for m in said) == 2  # each cell's progress line is still said
