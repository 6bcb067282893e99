"""``mheads train`` on several processes, end to end: checkpoints in distributed runs, a rank killed under
torchrun ``--max-restarts``, SIGTERM, data-parallel replicas, and resuming on another placement.

The runs are float32 CIFAR10-Quick TreeNets (split after conv1, 2 members, one per rank) on the embedded
28x28 data. With two branches the trunk's gradient is a sum of two terms, which every placement adds alike,
so these runs equal the single-process run bit for bit; the comparisons allow float32 rounding all the same.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from dist_launch import _env
from safetensors.torch import load_file

from cli_harness import write_config

pytestmark = [pytest.mark.slow, pytest.mark.dist, pytest.mark.timeout(600)]

HERE = Path(__file__).resolve().parent
TOL = 1e-6
# 12 iterations, a checkpoint every 3 and an evaluation every 6; no bagging (see test_replicas for it)
RUN = {"data": {"bagging": False}, "train": {"iterations": 12, "checkpoint_every": 3, "eval_every": 6}}


def _mheads(*args, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mheads", *map(str, args)],
        cwd=cwd,
        env=_env(30),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _torchrun(
    *args, cwd: Path, procs: int = 2, restarts: int = 0, timeout: float = 300
) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={procs}",
        f"--max-restarts={restarts}",
        *map(str, args),
    ]
    return subprocess.run(
        cmd, cwd=cwd, env=_env(30), capture_output=True, text=True, timeout=timeout, check=False
    )


def _ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"


def _same_weights(a: Path, b: Path, tol: float = TOL) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=tol, msg=k)


def _eval_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "eval.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The distributed run (2 processes under torchrun) and the single-process run of the same config."""
    work = tmp_path_factory.mktemp("dist-fit")
    cfg = write_config(work / "run.yaml", **RUN)
    _ok(
        _torchrun("-m", "mheads", "train", "--config", cfg, "--out", work / "dist", "--no-progress", cwd=work)
    )
    _ok(_mheads("train", "--config", cfg, "--out", work / "single", "--no-progress", cwd=work))
    return work


def test_a_distributed_run_checkpoints_like_a_single_process_one(runs):
    dist, single = runs / "dist", runs / "single"
    assert sorted(p.name for p in (dist / "checkpoints").iterdir()) == ["step-00000009", "step-00000012"]
    _same_weights(dist, single)
    assert _eval_steps(dist) == [6, 12]
    # the checkpoint's optimizer state is the single-process layout: same positions, same momentum
    from mheads.runs.checkpoint import load_checkpoint

    a, b = (
        load_checkpoint(dist / "checkpoints" / "step-00000009"),
        load_checkpoint(single / "checkpoints" / "step-00000009"),
    )
    sa, sb = a.state["optimizer"], b.state["optimizer"]
    assert [g["params"] for g in sa["param_groups"]] == [g["params"] for g in sb["param_groups"]]
    assert sa["state"].keys() == sb["state"].keys()
    for i in sb["state"]:
        torch.testing.assert_close(
            sa["state"][i]["momentum_buffer"], sb["state"][i]["momentum_buffer"], rtol=0, atol=TOL
        )
    # a single process reads the distributed run folder
    done = _mheads("eval", "--run", dist, "--no-figures", cwd=runs)
    _ok(done)
    assert (
        json.loads(done.stdout.strip().splitlines()[-1])["ensemble_mean_acc"]
        == json.loads((dist / "metrics.json").read_text())["ensemble_mean_acc"]
    )


def test_a_distributed_checkpoint_resumes_on_one_process(runs, tmp_path):
    part = tmp_path / "resumed"
    subprocess.run(["cp", "-r", str(runs / "dist"), str(part)], check=True)
    for name in ("checkpoints/step-00000012", "metrics.json", "model.safetensors"):
        target = part / name
        subprocess.run(["rm", "-rf", str(target)], check=True)
    done = _mheads("train", "--resume", part, "--no-progress", cwd=tmp_path)
    _ok(done)
    assert "iteration 9" in done.stderr
    _same_weights(part, runs / "single")
    assert _eval_steps(part) == [6, 12]


def test_a_killed_rank_is_restarted_by_torchrun_and_the_run_finishes_as_if_uninterrupted(runs, tmp_path):
    cfg = write_config(tmp_path / "run.yaml", **RUN)
    done = _torchrun(
        HERE / "fit_worker.py",
        "1",
        "7",
        "train",
        "--config",
        cfg,
        "--out",
        tmp_path / "k",
        "--no-progress",
        cwd=tmp_path,
        restarts=1,
    )
    _ok(done)
    assert "killing rank 1 at iteration 7" in done.stderr
    assert "resuming" in done.stderr and "iteration 6" in done.stderr  # from the checkpoint before the death
    _same_weights(tmp_path / "k", runs / "dist", tol=0.0)
    assert _eval_steps(tmp_path / "k") == [6, 12]  # one continuous history


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_ranks(args: list, cwd: Path, world: int = 2) -> list[subprocess.Popen]:
    """``mheads ARGS`` as ``world`` processes joining through env://, as a batch scheduler starts them."""
    port, procs = _free_port(), []
    for r in range(world):
        env = _env(30)
        env.update(
            RANK=str(r),
            WORLD_SIZE=str(world),
            LOCAL_RANK=str(r),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "mheads", *map(str, args)],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str]]:
    out = []
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        out.append((p.returncode, err))
    return out


def test_sigterm_checkpoints_a_distributed_run_which_resume_continues(tmp_path):
    long = {
        "data": {"bagging": False},
        "train": {"iterations": 400, "checkpoint_every": 50, "eval_every": 100},
    }
    cfg = write_config(tmp_path / "run.yaml", **long)
    ref = _mheads("train", "--config", cfg, "--out", tmp_path / "single", "--no-progress", cwd=tmp_path)
    _ok(ref)
    run = tmp_path / "run"
    procs = _start_ranks(["train", "--config", cfg, "--out", run, "--no-progress"], tmp_path)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "step-00000050").exists():  # running, past its first checkpoint
        assert time.time() < deadline and all(p.poll() is None for p in procs), _wait(procs)
        time.sleep(0.05)
    for p in procs:  # what a scheduler does on preemption: SIGTERM to every task
        p.send_signal(signal.SIGTERM)
    ended = _wait(procs)
    assert [code for code, _ in ended] == [75, 75], ended
    assert "preempted (SIGTERM) at iteration" in ended[0][1]
    stopped = int(ended[0][1].split("preempted (SIGTERM) at iteration ")[1].split(";")[0])
    assert stopped < 400 and (run / "checkpoints" / f"step-{stopped:08d}").is_dir()
    ended = _wait(_start_ranks(["train", "--resume", run, "--no-progress"], tmp_path))
    assert [code for code, _ in ended] == [0, 0], ended
    _same_weights(run, tmp_path / "single")
    assert _eval_steps(run) == [100, 200, 300, 400]


def test_replicas_train_on_shards_of_every_batch_like_one_process(runs, tmp_path):
    """dist.replicas: 2 on 2 processes (each replica the whole TreeNet), with bagging, MCL, crops and flips:
    the single-process run's weights, losses and MCL win counts."""
    # with the device-side guard (train.sync: deferred, the CUDA default), so its collective is covered too
    sections = {
        "train": {
            "iterations": 12,
            "checkpoint_every": 3,
            "eval_every": 6,
            "sync": "deferred",
            "log_every": 5,
        }
    }
    cfg = write_config(tmp_path / "run.yaml", dist={"replicas": 2}, **sections)
    _ok(
        _torchrun(
            "-m", "mheads", "train", "--config", cfg, "--out", tmp_path / "rep", "--no-progress", cwd=tmp_path
        )
    )
    _ok(_mheads("train", "--config", cfg, "--out", tmp_path / "single", "--no-progress", cwd=tmp_path))
    _same_weights(tmp_path / "rep", tmp_path / "single", tol=1e-5)
    a = [json.loads(x) for x in (tmp_path / "rep" / "eval.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "single" / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in a] == [6, 12]
    for x, y in zip(a, b):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-5)
        assert x["win_fraction"] == y["win_fraction"]
    # 4 processes with replicas 3: refused, naming the field
    bad = write_config(tmp_path / "bad.yaml", dist={"replicas": 3}, train={"batch_size": 9})
    done = _torchrun(
        "-m", "mheads", "train", "--config", bad, "--out", tmp_path / "bad", "--no-progress", cwd=tmp_path
    )
    assert done.returncode != 0 and "dist.replicas: got 3" in done.stderr
