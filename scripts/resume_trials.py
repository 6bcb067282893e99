"""Kill a small training run with SIGKILL at random moments, resume it, and check it ends bit-identical.

Issue 6's exact-resume check at a larger count than the default test run (tests/train/test_resume.py runs a
few trials): one uninterrupted ``python -m mheads train`` run is the reference; each trial trains the same
config, sends SIGKILL 1..--max-kills times (each at a uniformly random moment of the command's life, so kills
land during setup, training steps, checkpoint saves, the final evaluation and the final save), resumes with
``mheads train --resume`` after each, and compares the finished run with the reference
(``mheads.runs.compare.run_differences``: every weight file with ``torch.equal``, metrics.json (timings
aside) and eval.jsonl).

    python scripts/resume_trials.py --trials 20
    python scripts/resume_trials.py --trials 10 --stream   # the streaming loader with 2 worker processes

Exit status 0 when every trial matches, 1 otherwise. Runs on the CPU; about a second per trial on an idle
machine after ~10 s of start-up: this process imports torch and mheads once and forks one child per command,
which runs ``mheads.cli.commands.main`` as ``python -m mheads`` would.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: forked children must not inherit a thread pool

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import yaml  # noqa: E402

import mheads.cli.commands  # noqa: E402  (what the commands import lazily, imported once before forking)
import mheads.data  # noqa: E402, F401
import mheads.train.loop  # noqa: E402, F401
from mheads.runs.checkpoint import CHECKPOINTS_DIR, list_checkpoints  # noqa: E402
from mheads.runs.checkpoint_format import COMMIT_FILE  # noqa: E402
from mheads.runs.compare import run_differences  # noqa: E402

# Small enough for seconds of CPU, yet every random stream of training is used: data order, bagging,
# augmentation (crop and flip), MCL tie-breaks; a shared trunk (split at conv1) and 2 members.
SMALL_RUN = {
    "name": "resume-trials",
    "model": {"name": "cifar10_quick", "members": 2, "split": "conv1"},
    "data": {"train_limit": 64, "test_limit": 32, "crop_padding": 2, "flip": True, "bagging": True},
    "loss": {"name": "mcl", "k": 1},
    "optim": {"lr": 0.001, "milestones": [15]},
    "train": {
        "iterations": 24,
        "batch_size": 8,
        "eval_every": 6,
        "eval_batch_size": 32,
        "checkpoint_every": 3,
        "keep_checkpoints": 2,
        "threads": 1,
        "device": "cpu",
        "seed": 7,
    },
}


def write_config(path: Path, stream_folder: Path | None = None) -> Path:
    """SMALL_RUN as YAML; with ``stream_folder``, streamed from that folder of varied-size JPEGs by 2 worker
    processes with random-resized crops."""
    cfg = json.loads(json.dumps(SMALL_RUN))
    if stream_folder is not None:
        cfg["data"].update(
            source=str(stream_folder),
            loader="stream",
            workers=2,
            image_size=16,
            train_crop="random_resized",
            crop_padding=0,
            train_limit=None,
            test_limit=None,
        )
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@dataclass
class Command:
    """One ``mheads`` command in a forked child of this process."""

    argv: list[str]
    pid: int
    started: float

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # already ended (a zombie until waited for)
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float = 240.0) -> int:
        """The exit code (-N: killed by signal N); SIGKILL after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            if time.monotonic() > deadline:
                self.kill()
                deadline = float("inf")
            time.sleep(0.01)


def start(argv: list, log: Path) -> Command:
    """Fork a child that runs ``mheads <argv>`` with stdout and stderr to ``log``."""
    argv = [str(a) for a in argv]
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.argv = ["mheads", *argv]
            try:
                code = mheads.cli.commands.main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    return Command(argv, pid, time.monotonic())


def committed_step(run: Path) -> int | None:
    """The newest committed checkpoint's step (None: none yet)."""
    found = list_checkpoints(run)
    return int(found[-1].name.rpartition("-")[2]) if found else None


def save_leftovers(run: Path) -> list[str]:
    """What an interrupted checkpoint save left: scratch folders and step folders without a commit marker."""
    folder = run / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name.startswith((".tmp-", ".trash-")) or not (p / COMMIT_FILE).is_file()
    )


def phase(committed: int | None, leftovers: list[str], finished: bool) -> str:
    if leftovers:
        return "inside a checkpoint save"
    if finished:
        return "after the final weights"
    return "before the first checkpoint" if committed is None else "after a step"


def kill_and_resume(
    config: Path, out: Path, log: Path, rng: random.Random, duration: float, kills: int
) -> list[tuple[float, str]]:
    """Train ``config`` into ``out``; SIGKILL it ``kills`` times, each at a uniformly random moment within
    ``duration`` seconds of its start, resuming after each; let the last resume finish. A run that finishes
    before its kill is started over (the trial must kill something). Returns (seconds, phase) per kill."""
    while True:
        shutil.rmtree(out, ignore_errors=True)
        landed: list[tuple[float, str]] = []
        argv = ["train", "--config", config, "--out", out, "--no-progress"]
        while True:
            cmd = start(argv, log)
            delay = rng.uniform(0.0, duration) if len(landed) < kills else None
            if delay is not None:
                time.sleep(max(0.0, cmd.started + delay - time.monotonic()))
                cmd.kill()
            code = cmd.wait()
            if code == -signal.SIGKILL:
                landed.append(
                    (
                        delay,
                        phase(committed_step(out), save_leftovers(out), (out / "model.safetensors").exists()),
                    )
                )
                # a kill before the folder was initialised leaves nothing to resume: rerun the command
                if (out / "config.yaml").is_file():
                    argv = ["train", "--resume", out, "--no-progress"]
                continue
            if code != 0:
                raise RuntimeError(f"mheads {' '.join(map(str, cmd.argv))} exited {code}:\n{log.read_text()}")
            break
        if landed:
            return landed
        duration *= 0.7  # this machine ran faster than the calibration run: aim earlier


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20, help="number of kill-and-resume trials (default 20)")
    p.add_argument("--max-kills", type=int, default=3, help="SIGKILLs per trial: 1..this, drawn per trial")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument(
        "--workdir", type=Path, help="keep the run folders here (default: a temporary folder, removed)"
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="stream a generated folder of varied-size JPEGs with 2 DataLoader workers "
        "(data.loader: stream, random-resized crops) instead of the resident embedded data",
    )
    args = p.parse_args(argv)
    if args.trials < 1 or args.max_kills < 1:
        p.error(f"--trials and --max-kills must be >= 1, got {args.trials} and {args.max_kills}")
    torch.set_num_threads(1)

    work = (args.workdir or Path(tempfile.mkdtemp(prefix="mheads-resume-trials-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MHEADS_CACHE"] = str(work / "cache")
    os.chdir(work)
    try:
        folder = None
        if args.stream:
            from mheads.data.shards import write_varied_folder

            folder = write_varied_folder(work / "varied", 96, 24, 4, sizes=(16, 40), seed=1)
        config = write_config(work / "run.yaml", folder)
        t0 = time.monotonic()
        ref = subprocess.run(
            [
                sys.executable,
                "-m",
                "mheads",
                "train",
                "--config",
                str(config),
                "--out",
                str(work / "reference"),
                "--no-progress",
            ],
            capture_output=True,
            text=True,
        )
        if ref.returncode != 0:
            print(f"the reference run failed:\n{ref.stdout}{ref.stderr}", file=sys.stderr)
            return 1
        ref_s = time.monotonic() - t0
        forked = start(
            ["train", "--config", config, "--out", work / "forked", "--no-progress"], work / "forked.log"
        )
        code = forked.wait()
        duration = time.monotonic() - forked.started
        same = run_differences(work / "reference", work / "forked") if code == 0 else [f"exit {code}"]
        print(
            f"reference: python -m mheads train in {ref_s:.1f}s; the same run forked from this process "
            f"in {duration:.1f}s: {'identical' if not same else 'DIFFERENT ' + str(same)}"
        )
        if same:
            return 1

        phases: Counter[str] = Counter()
        failed = 0
        for trial in range(args.trials):
            rng = random.Random(args.seed * 100_003 + trial)
            out = work / f"trial{trial:03d}"
            kills = kill_and_resume(
                config,
                out,
                work / f"trial{trial:03d}.log",
                rng,
                duration,
                kills=rng.randint(1, args.max_kills),
            )
            diffs = run_differences(work / "reference", out)
            failed += bool(diffs)
            phases.update(ph for _, ph in kills)
            where = "; ".join(f"{s:.2f}s {ph}" for s, ph in kills)
            print(
                f"trial {trial + 1:3d}: {len(kills)} kill(s) [{where}] -> "
                f"{'bit-identical' if not diffs else 'DIFFERENT: ' + ', '.join(diffs)}",
                flush=True,
            )
            if not diffs and args.workdir is None:
                shutil.rmtree(out)
        print(
            f"{args.trials - failed}/{args.trials} trials bit-identical to the uninterrupted run "
            f"({sum(phases.values())} kills: {', '.join(f'{n} {p}' for p, n in phases.most_common())}; "
            f"{time.monotonic() - t0:.0f}s)"
        )
        return 1 if failed else 0
    finally:
        if args.workdir is None:
            os.chdir("/")
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
