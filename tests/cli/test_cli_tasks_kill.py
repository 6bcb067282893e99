"""Exact resume on a non-classification task (issue 32): a regression run on a CSV table, SIGKILLed right
after a checkpoint is committed, resumed from the command line (naming its import-path model: a run folder
never names code to import), ends with weights bit-identical to an uninterrupted run."""

from __future__ import annotations

import csv
import signal
import time

import numpy as np

from cli_harness import run_differences

MODEL = """
from torch import nn


def net(num_classes=2, in_channels=3, **_):  # num_classes: the task's head width (2 * D, Gaussian)
    return nn.Sequential(nn.Linear(in_channels, 16), nn.ReLU(), nn.Linear(16, num_classes))
"""


def _setup(folder):
    folder.mkdir()
    (folder / "killnet.py").write_text(MODEL)
    rng = np.random.default_rng(0)
    with (folder / "t.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "y"])
        for row in rng.normal(size=(200, 3)):
            w.writerow([*row, row[0] - 2 * row[1] + 0.1 * rng.normal()])
    config = folder / "c.yaml"
    config.write_text(
        "model: {name: 'killnet:net', members: 3}\ntask: {name: regression, head: gaussian}\n"
        "loss: {name: mcl, k: 1}\n"
        "data: {source: t.csv, features: [a, b, c], targets: [y], test_fraction: 0.25, "
        "bagging: true}\n"
        "train: {iterations: 60, batch_size: 16, eval_every: 20, checkpoint_every: 5, "
        "keep_checkpoints: 2, threads: 1}\n"
    )
    return config


def test_a_regression_run_killed_after_a_checkpoint_resumes_bit_identical(server, work):
    folder = work / "task-kill"
    config = _setup(folder)
    ref = server.run("train", "--config", config, "--out", folder / "ref", "--no-progress", cwd=folder)
    assert ref.returncode == 0, str(ref)
    out = folder / "killed"
    running = server.start("train", "--config", config, "--out", out, "--no-progress", cwd=folder)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not running.done():
        ckdir = out / "checkpoints"
        committed = list(ckdir.glob("step-*/COMMITTED")) if ckdir.is_dir() else []
        if committed:
            running.signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    killed = running.wait()
    assert killed.returncode == -signal.SIGKILL, f"finished before a kill landed: {killed}"
    refused = server.run("train", "--resume", out, "--no-progress", cwd=folder)
    assert refused.returncode == 2 and "--model" in refused.error_line, str(refused)
    resumed = server.run("train", "--resume", out, "--model", "killnet:net", "--no-progress", cwd=folder)
    assert resumed.returncode == 0 and "resuming from" in resumed.stderr, str(resumed)
    assert run_differences(folder / "ref", out) == []
