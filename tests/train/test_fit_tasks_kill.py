"""SIGKILL then resume through mheads.fit on the four inputs of issue 32 (test_fit_tasks.CASES: a tabular
regression Dataset, a sequence Dataset, non-square images, a dict-input dict-output model). A forked child
(torch is imported here already: no interpreter start) trains the run and is SIGKILLed a seeded random
delay after its first checkpoint is committed (0-100 ms; the rest of the run takes 200-400 ms at load 4), so
the kill lands in the steps, evaluations and saves after it; fit(resume=True) then finishes the run. The
folder must be the uninterrupted run's (weights torch.equal, metrics, evaluation log), and reopened
from the folder it evaluates and predicts as the uninterrupted run does."""

from __future__ import annotations

import os
import random
import signal
import time
import traceback

import pytest
import torch
from test_fit_tasks import CASES, _fit

import mheads
from mheads.runs.compare import run_differences

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(120)]

ITERATIONS = 12  # checkpoints every 2 steps (test_fit_tasks.BASE): five more commits after the first


def _train_in_child(case: str, out) -> int:
    """Fork a child that trains the run (its output and any traceback to files beside ``out``)."""
    pid = os.fork()
    if pid == 0:  # never returns into pytest
        try:
            torch.set_num_threads(1)  # a forked child runs no parallel region (the parent's pool is gone)
            log = os.open(f"{out}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            _fit(case, out, ITERATIONS)
        except BaseException:
            with open(f"{out}.err", "w") as f:
                f.write(traceback.format_exc())
        finally:
            os._exit(1)
    return pid


def _kill_after_first_commit(pid: int, out, delay: float) -> int:
    """SIGKILL the child ``delay`` seconds after a checkpoint of ``out`` is committed; its wait status."""
    deadline, kill_at = time.monotonic() + 90, None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if kill_at is None and list(out.glob("checkpoints/step-*/COMMITTED")):
            kill_at = time.monotonic() + delay
        if kill_at is not None and time.monotonic() >= kill_at:
            break
        time.sleep(0.001)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def _reopened(case: str, run):
    """Evaluate and predict from the run folder alone (the model named again, as for any Python model)."""
    model, data, task, _ = CASES[case]
    ds = data()
    first = ds[0][0]
    batch = {k: v.unsqueeze(0) for k, v in first.items()} if isinstance(first, dict) else first
    extra = {"task": task} if not isinstance(task, str) else {}
    metrics = mheads.evaluate(run, ds, model=model, **extra)
    return metrics, mheads.predict(run, batch, model=model, **extra)


@pytest.mark.parametrize("case", list(CASES))
def test_a_run_sigkilled_after_a_checkpoint_resumes_bit_identical_and_reopens(tmp_path, case):
    _fit(case, tmp_path / "full", ITERATIONS)
    out = tmp_path / "killed"
    delay = random.Random(list(CASES).index(case)).uniform(0.0, 0.1)
    status = _kill_after_first_commit(_train_in_child(case, out), out, delay)
    err = tmp_path / "killed.err"
    assert not err.exists(), "the child died by itself:\n" + err.read_text()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f"finished before a kill landed (wait status {status})"
    )
    assert not (out / "metrics.json").exists()  # killed mid-run: nothing final written
    committed = sorted(out.glob("checkpoints/step-*/COMMITTED"))
    resumed = _fit(case, out, ITERATIONS, resume=True)
    assert resumed.metrics["resumed_from_iteration"] == int(committed[-1].parent.name.split("-")[1])
    assert run_differences(tmp_path / "full", out) == []
    full_metrics, full_records = _reopened(case, tmp_path / "full")
    metrics, records = _reopened(case, out)
    assert metrics == full_metrics and records == full_records
    assert len(records) == 1 and len(records[0]["members"]) == 3
