"""Hostile and unusual command lines: a SIGTERM while starting, malformed run records, impossible sweep
arguments, a config that --overwrite would delete."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from mheads.cli import main

SMALL = (
    "model: {members: 2}\ndata: {train_limit: 64, test_limit: 32}\n"
    "train: {iterations: 2, batch_size: 8, eval_every: 0, checkpoint_every: 0}\n"
)
# Long enough that a kill at 2 s lands inside the loop even on a fast machine
LONG = SMALL.replace("iterations: 2,", "iterations: 400,")


# before, inside and after importing torch and the data: a genuine interpreter each (seconds); the middle one
# in the fast tier (the loop's own SIGTERM handling is tests/train/test_resume.py's, on the fork server)
@pytest.mark.parametrize(
    "delay", [pytest.param(0.3, marks=pytest.mark.slow), 1.0, pytest.param(2.0, marks=pytest.mark.slow)]
)
def test_sigterm_while_starting_exits_75_with_a_line_not_143(tmp_path, delay):
    config = tmp_path / "c.yaml"
    config.write_text(LONG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mheads", "train", "--config", str(config), "--out", str(tmp_path / "run")],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)  # the interpreter is up; torch, data and the model may still be loading
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    # A fast machine may finish the run before the signal, or between writing it and exiting (the handler
    # is gone by then, so the process ends -15). Either way the run is complete and there is nothing to check.
    if (tmp_path / "run" / "metrics.json").is_file() and proc.returncode in (0, -signal.SIGTERM):
        return
    assert proc.returncode == 75, err
    assert "Traceback" not in err
    # before the training loop: the early line; inside it: the loop's checkpoint and its own line
    assert "stopped by SIGTERM outside a training loop" in err or "preempted (SIGTERM) at iteration" in err


@pytest.mark.parametrize(
    "content",
    [b"[1, 2]", b'"text"', b"\xff\xfe not utf-8", b'{"classes": 3}', None],
    ids=["list", "string", "not-utf8", "wrong-types", "folder"],
)
def test_plot_refuses_malformed_metrics_with_exit_2(tmp_path, content, capsys):
    run = tmp_path / "run"
    run.mkdir()
    if content is None:
        (run / "metrics.json").mkdir()
    else:
        (run / "metrics.json").write_bytes(content)
    (run / "eval.jsonl").write_text('[1]\n{"step": "x"}\n')
    assert main(["plot", str(run)]) == 2
    assert capsys.readouterr().err.startswith("mheads: error: ")


def test_plot_skips_malformed_evaluation_lines(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"oracle_assignment": [[1.0]], "classes": ["a"]}))
    (run / "eval.jsonl").write_text('[1]\n{"step": "x"}\n')
    assert main(["plot", str(run)]) == 0 and (run / "plots" / "assignment.png").is_file()


def test_reproduce_refuses_a_negative_first_seed_and_a_file_as_out(tmp_path, capsys):
    assert main(["reproduce", "table1", "--out", str(tmp_path / "t"), "--first-seed", "-5"]) == 2
    assert "--first-seed: got -5; expected an integer >= 0" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["reproduce", "table1", "--out", str(tmp_path / "file")]) == 2
    assert "is a file; expected a folder" in capsys.readouterr().err


def test_overwrite_never_deletes_the_config_it_reads(tmp_path, capsys):
    run = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text(SMALL)
    assert main(["train", "--config", str(config), "--out", str(run), "--no-progress"]) == 0
    inside = run / "config.yaml"  # the resolved config the run wrote, edited in place by a user
    assert main(["train", "--config", str(inside), "--out", str(run), "--overwrite", "--no-progress"]) == 2
    assert "which --overwrite clears; copy it elsewhere first" in capsys.readouterr().err
    assert inside.is_file()


def test_a_closed_pipe_ends_quietly():
    done = subprocess.run(
        f"{sys.executable} -m mheads list-models | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.count("\n") == 1 and "Traceback" not in done.stderr and "Broken" not in done.stderr


@pytest.mark.parametrize(
    "assignment",
    [[[None]], [["0.5"]], [[float("nan")]], [[1.0, 0.0]], [1.0]],
    ids=["null", "string", "nan", "row-length", "not-rows"],
)
def test_plot_refuses_an_assignment_that_is_not_finite_shares_per_class(tmp_path, assignment, capsys):
    # Each was a TypeError or IndexError traceback, or (NaN) a heatmap drawn from nothing.
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"oracle_assignment": assignment, "classes": ["a"]}))
    assert main(["plot", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mheads: error: ") and "oracle_assignment: expected one list per member" in err
    assert not (run / "plots").exists()


def test_plot_skips_evaluation_records_of_wrong_types_and_never_writes_through_a_link(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"oracle_assignment": [[1.0]], "classes": ["a"]}))
    good = {"step": 1, "train_loss": 1.0, "ensemble_mean_acc": 0.5, "oracle_acc": 0.5, "member_acc": [0.5]}
    bad = [  # a KeyError or TypeError traceback in the training curves before
        {**good, "ensemble_mean_acc": None},
        {**good, "train_loss": [1, "a"]},
        {**good, "member_acc": [0.5, 0.5]},
        {**good, "oracle_acc": "x"},
    ]
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*bad, good]))
    assert main(["plot", str(run)]) == 0 and (run / "plots" / "curves.png").is_file()
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(run / "plots")
    (run / "plots").symlink_to(outside)
    assert main(["plot", str(run)]) == 2
    assert "plots: is a symbolic link" in capsys.readouterr().err and list(outside.iterdir()) == []
