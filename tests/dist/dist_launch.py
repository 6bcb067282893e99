"""Launching multi-process tests: each rank is a fresh Python process joining through a FileStore under
``tmp_path`` (no ports), killed if it outlives a hard deadline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("dist_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass
class Rank:
    rank: int
    returncode: int
    stdout: str
    stderr: str
    ended_at: float  # time.time() when the process was seen to exit
    result: dict | None


def _env(timeout_s: float) -> dict:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MHEADS_TEST_TIMEOUT=str(timeout_s),
        PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")])),
    )
    for key in (
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "TORCHELASTIC_USE_AGENT_STORE",
    ):
        env.pop(key, None)
    return env


def run_ranks(
    tmp_path: Path,
    scenario: str,
    world: int,
    arg: str = "",
    *,
    deadline_s: float = 90.0,
    timeout_s: float = 30.0,
) -> list[Rank]:
    """Start ``world`` workers and wait for all of them; any still running after ``deadline_s`` is killed."""
    run_dir = tmp_path / f"{scenario}-{arg.replace(':', '-') or 'run'}"
    run_dir.mkdir()
    store = run_dir / "store"
    procs = []
    for r in range(world):
        out, err = open(run_dir / f"out{r}.txt", "w"), open(run_dir / f"err{r}.txt", "w")
        procs.append(
            (
                subprocess.Popen(
                    [
                        sys.executable,
                        str(WORKER),
                        scenario,
                        str(r),
                        str(world),
                        str(store),
                        str(run_dir),
                        arg,
                    ],
                    stdout=out,
                    stderr=err,
                    env=_env(timeout_s),
                ),
                out,
                err,
            )
        )
    ended = [None] * world
    start = time.time()
    try:
        while any(e is None for e in ended):
            for r, (p, _, _) in enumerate(procs):
                if ended[r] is None and p.poll() is not None:
                    ended[r] = time.time()
            if time.time() - start > deadline_s:
                raise TimeoutError(
                    f"{scenario} {arg}: ranks {[r for r, e in enumerate(ended) if e is None]} "
                    f"still running after {deadline_s} s"
                )
            time.sleep(0.02)
    finally:
        for p, out, err in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            out.close()
            err.close()
    ranks = []
    for r, (p, _, _) in enumerate(procs):
        res = run_dir / f"rank{r}.pt"
        ranks.append(
            Rank(
                r,
                p.returncode,
                (run_dir / f"out{r}.txt").read_text(),
                (run_dir / f"err{r}.txt").read_text(),
                ended[r],
                torch.load(res, weights_only=True) if res.exists() else None,
            )
        )
    return ranks


def run_torchrun(
    tmp_path: Path,
    scenario: str,
    world: int,
    arg: str = "",
    *,
    deadline_s: float = 90.0,
    timeout_s: float = 30.0,
) -> list[Rank]:
    """The same through ``torchrun --standalone`` (its agent serves the store on a free port): exercises
    ``mheads.dist.init_from_env``. Every rank shares torchrun's exit code and output."""
    run_dir = tmp_path / f"torchrun-{scenario}"
    run_dir.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={world}",
        str(WORKER),
        scenario,
        "-1",
        "-1",
        "env",
        str(run_dir),
        arg,
    ]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, env=_env(timeout_s), timeout=deadline_s, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise TimeoutError(f"torchrun {scenario} {arg}: still running after {deadline_s} s") from err
    ranks = []
    for r in range(world):
        res = run_dir / f"rank{r}.pt"
        ranks.append(
            Rank(
                r,
                done.returncode,
                done.stdout,
                done.stderr,
                time.time(),
                torch.load(res, weights_only=True) if res.exists() else None,
            )
        )
    return ranks


def check_ok(ranks: list[Rank]) -> None:
    bad = [r for r in ranks if r.returncode != 0]
    assert not bad, "\n".join(f"rank {r.rank} exited {r.returncode}:\n{r.stderr[-3000:]}" for r in bad)
