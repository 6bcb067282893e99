"""Exact resume through the command line: SIGKILL at random moments, SIGKILL inside checkpoint saves, SIGTERM.

Every run here trains the same small configuration (``cli_harness.SMALL_RUN``: 2 members on a shared conv1
trunk, MCL, bagging, crop-and-flip augmentation) and must end bit-identical to one uninterrupted run
(through the CLI server; the slow tier checks that against a genuine ``python -m mheads`` process): weights,
final metrics and the evaluation log. ``scripts/resume_trials.py`` runs
more trials; the further random trials here are in the slow tier.

The runs are 12 iterations (SMALL_RUN's 24 halved, for the fast tier): still 1.5 epochs of 8 batches (a
reshuffle), an LR milestone, evaluations at 6 and 12 and checkpoints every 3, so a resume still has to restore
every random stream, the schedule and the evaluation log.
"""

from __future__ import annotations

import random
import re
import signal
import time

import pytest

from cli_harness import (
    committed_steps,
    kill_and_resume,
    leftovers,
    run_differences,
    run_module,
    streamed_sections,
    write_config,
)

pytestmark = pytest.mark.timeout(400)

SHORT = {"optim": {"milestones": [9]}, "train": {"iterations": 12}}


@pytest.fixture(scope="module")
def config(work):
    return write_config(work / "run.yaml", **SHORT)


@pytest.fixture(scope="module")
def forked(server, work, config):
    """The uninterrupted run, through the CLI server; its wall time calibrates when kills land."""
    out = work / "forked"
    result = server.run("train", "--config", config, "--out", out, "--no-progress")
    assert result.returncode == 0, str(result)
    return out, result.seconds


@pytest.fixture(scope="module")
def reference(forked):
    """What every interrupted run must end equal to: the server's uninterrupted run (the slow tier checks it
    against a genuine ``python -m mheads train`` process, which imports torch: seconds of CPU)."""
    return forked[0]


@pytest.mark.slow  # a fresh process importing torch; the fork server's children are separate processes too
def test_same_seed_same_run_bit_identical_across_processes(work, config, forked):
    # Two separate processes, same config and seed, bagging on: weights, metrics and eval log all equal.
    out = work / "genuine"
    result = run_module(
        "train",
        "--config",
        config,
        "--out",
        out,
        "--no-progress",
        cwd=work,
        env={"MHEADS_CACHE": str(work / "cache")},
    )
    assert result.returncode == 0, str(result)
    assert run_differences(out, forked[0]) == []


# trial 1 (two kills) in the fast tier; trials 0 and 2 (one kill each) repeat it with other moments
@pytest.mark.parametrize(
    "trial", [pytest.param(0, marks=pytest.mark.slow), 1, pytest.param(2, marks=pytest.mark.slow)]
)
def test_sigkill_at_random_moments_then_resume_is_exact(server, work, config, reference, forked, trial):
    rng = random.Random(1000 + trial)
    out = work / f"trial{trial}"
    kills = kill_and_resume(server, config, out, rng, duration=forked[1], kills=1 + trial % 2)
    assert kills, "no kill landed: the trial exercised nothing"
    assert run_differences(reference, out) == [], [k.phase for k in kills]


@pytest.fixture(scope="module")
def streamed(server, work):
    """A config streaming a folder of varied-size JPEGs with 2 workers, and its uninterrupted run."""
    from mheads.data.shards import write_varied_folder

    folder = write_varied_folder(work / "varied", 96, 24, 4, sizes=(16, 40), seed=1)
    # 96 training images: 12 batches an epoch, so 16 iterations cross an epoch with the workers running
    config = write_config(
        work / "streamed.yaml", optim=SHORT["optim"], train={"iterations": 16}, **streamed_sections(folder)
    )
    ref = server.run("train", "--config", config, "--out", work / "streamed-ref", "--no-progress")
    assert ref.returncode == 0, str(ref)
    return config, ref.seconds


@pytest.mark.parametrize("trial", [0, pytest.param(1, marks=pytest.mark.slow)])  # trial 1: other moments
def test_streamed_run_with_two_workers_resumes_exactly(server, work, streamed, trial):
    config, seconds = streamed
    out = work / f"streamed{trial}"
    kills = kill_and_resume(server, config, out, random.Random(77 + trial), duration=seconds, kills=2)
    assert kills and run_differences(work / "streamed-ref", out) == [], [k.phase for k in kills]


RESUMING = re.compile(r"resuming from \S*step-(\d+) \(iteration (\d+)\)")


class SaveKiller:
    """SIGKILLs a run inside one of its checkpoint saves: the k-th save it starts (k random in 1..3), at a
    random moment within the longest save seen so far (10 ms before any; a save runs from its ``.tmp-`` folder
    appearing to its commit marker), so kills land in every phase of a save and the run still progresses
    between kills."""

    def __init__(self, rng: random.Random):
        self.rng, self.longest = rng, 0.0

    def run(self, server, argv, out, timeout=120.0):
        ckdir = out / "checkpoints"

        def listing() -> set[str]:
            return {p.name for p in ckdir.iterdir()} if ckdir.is_dir() else set()

        seen, target, saving = listing(), self.rng.randint(1, 3), None
        running = server.start(*argv)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not running.done():  # done: it finished before its k-th save
            names = listing()
            now = time.monotonic()
            fresh = sorted(n for n in names - seen if n.startswith(".tmp-"))
            seen |= names
            if saving and (ckdir / saving[0] / "COMMITTED").is_file():
                self.longest = max(self.longest, now - saving[1])
                saving = None
            if fresh:
                target -= 1
                if target == 0:
                    time.sleep(self.rng.uniform(0.0, self.longest or 0.01))
                    running.signal(signal.SIGKILL)
                    break
                # ".tmp-step-00000004-ab12" -> "step-00000004"
                saving = (fresh[-1][len(".tmp-") :].rsplit("-", 1)[0], now)
            time.sleep(0.0005)
        return running.wait()


def test_sigkill_inside_checkpoint_saves_resumes_from_the_newest_committed(server, work, reference):
    """Checkpoint every iteration and kill the process inside a save, again and again: each resume starts from
    the newest committed checkpoint (read off the folder independently), never fails on the partial one, and
    the run still ends bit-identical (checkpointing does not change training)."""
    rng = random.Random(7)
    every_step = {**SHORT["train"], "checkpoint_every": 1, "keep_checkpoints": 2}
    config = write_config(work / "every-step.yaml", optim=SHORT["optim"], train=every_step)
    out = work / "every-step"
    argv = ["train", "--config", config, "--out", out, "--no-progress"]
    newest, partial, resumed, killer = None, 0, 0, SaveKiller(rng)
    for kill in range(8):
        result = killer.run(server, argv, out)
        # never refused: partial saves are skipped
        assert result.returncode in (0, -signal.SIGKILL), str(result)
        if argv[1] == "--resume":
            found = RESUMING.search(result.stderr)
            if newest is None:
                assert found is None, str(result)
            else:
                assert found and int(found.group(1)) == newest == int(found.group(2)), str(result)
                resumed += 1
        if result.returncode == 0:
            break
        steps = committed_steps(out)
        if newest is not None:
            assert steps and steps[-1] >= newest, "a committed checkpoint went missing"
        newest = steps[-1] if steps else None  # None: killed inside the very first save
        partial += bool(leftovers(out))
        argv = ["train", "--resume", out, "--no-progress"]
    else:
        result = server.run(*argv)
        assert result.returncode == 0, str(result)
        found = RESUMING.search(result.stderr)
        assert (found and int(found.group(1)) == newest) if newest is not None else not found, str(result)
        resumed += newest is not None
    assert resumed >= 4, f"only {resumed} resumes: the run finished too early"
    assert partial >= 2, f"only {partial} kills left a partial save behind: they did not land inside saves"
    assert run_differences(reference, out, same_config=False) == []  # it differs in checkpoint_every only


def test_sigterm_writes_a_checkpoint_exits_75_and_resumes_exactly(server, work, config, reference):
    out = work / "preempted"
    running = server.start("train", "--config", config, "--out", out, "--no-progress")
    deadline = time.monotonic() + 120
    while (
        not committed_steps(out) and time.monotonic() < deadline and not running.done()
    ):  # training under way
        time.sleep(0.002)
    time.sleep(0.02)  # a moment into the next iterations (12 in all: leave most of them to interrupt)
    running.signal(signal.SIGTERM)
    result = running.wait()
    assert result.returncode == 75, str(result)
    found = re.fullmatch(
        r"mheads: preempted \(SIGTERM\) at iteration (\d+); checkpoint written; "
        r"continue with `mheads train --resume (\S+)`",
        result.error_line,
    )
    assert found and found.group(2) == str(out), str(result)
    step = int(found.group(1))
    assert 0 < step < 12 and committed_steps(out)[-1] == step
    assert "Traceback" not in result.stderr
    again = server.run("train", "--resume", out, "--no-progress")
    assert again.returncode == 0, str(again)
    assert f"(iteration {step})" in again.stderr
    assert run_differences(reference, out) == []
