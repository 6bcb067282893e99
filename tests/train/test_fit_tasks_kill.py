"""SIGKILL then resume through mheads.fit on the four inputs of issue 32 (test_fit_tasks.CASES: a tabular
regression Dataset, a sequence Dataset, non-square images, a dict-input dict-output model). A forked child
(torch is imported here already: no interpreter start) trains the run and SIGKILLs itself right after the
optimizer step of a seeded iteration past the first checkpoint (3-11 of 12; checkpoints and evaluations every
2), so the kill lands with steps, and sometimes an evaluation line, past the newest committed checkpoint; it
is counted in steps, not timed, so a fast or a loaded machine kills at the same place. fit(resume=True) then
finishes the run. The folder must be the uninterrupted run's (weights torch.equal, metrics, evaluation log),
and reopened from the folder it evaluates and predicts as the uninterrupted run does."""

from __future__ import annotations

import os
import random
import signal

import pytest
from test_fit_tasks import CASES, _fit

import mheads
from killed_child import killed_in_child
from mheads.runs.compare import run_differences

pytestmark = pytest.mark.timeout(120)

ITERATIONS = 12  # checkpoints and evaluations every 2 steps (test_fit_tasks.BASE)


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
    kill_at = random.Random(list(CASES).index(case)).randint(3, ITERATIONS - 1)
    status = killed_in_child(out, kill_at, lambda: _fit(case, out, ITERATIONS))
    err = tmp_path / "killed.err"
    assert not err.exists(), "the child died by itself:\n" + err.read_text()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f"the child was not killed (wait status {status})"
    )
    assert not (out / "metrics.json").exists()  # killed mid-run: nothing final written
    committed = sorted(out.glob("checkpoints/step-*/COMMITTED"))
    newest = int(committed[-1].parent.name.split("-")[1])
    assert 2 <= newest < kill_at  # killed with steps past the newest committed checkpoint
    resumed = _fit(case, out, ITERATIONS, resume=True)
    assert resumed.metrics["resumed_from_iteration"] == newest
    assert run_differences(tmp_path / "full", out) == []
    full_metrics, full_records = _reopened(case, tmp_path / "full")
    metrics, records = _reopened(case, out)
    assert metrics == full_metrics and records == full_records
    assert len(records) == 1 and len(records[0]["members"]) == 3
