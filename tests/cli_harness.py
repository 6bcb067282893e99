"""Run the ``mheads`` command line many times, cheaply, as real processes that can be killed.

Starting ``python -m mheads`` costs seconds (importing torch), so a server process imports everything once and
forks one child per command. Each child runs ``mheads.cli.commands.main(argv)`` exactly as
``python -m mheads`` does (``SystemExit`` and uncaught exceptions included), with its own stdout, stderr and
working folder, and can be sent SIGKILL or SIGTERM like any process. ``run_module`` starts a genuine
``python -m mheads`` for the checks that must not depend on the server.

Also here: the small run every reliability test trains (run folders compare with
``mheads.runs.compare.run_differences``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from memcap import PipeLines
from mheads.runs.compare import TIMING_KEYS, run_differences  # noqa: F401 (the tests compare runs with these)

REPO = Path(__file__).resolve().parents[1]

SERVER = r"""
import json, os, sys, traceback
import torch  # the expensive import, done once; the children inherit it
import torch._dynamo  # torch.optim imports it on first use: seconds
# what the commands import lazily
import mheads.cli.commands, mheads.train.loop, mheads.infer.evaluate, mheads.data
print("ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(req["cwd"])
            os.environ.update(req["env"])
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            for fd, name in ((1, req["stdout"]), (2, req["stderr"])):
                f = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(f, fd)
                os.close(f)
            sys.argv = ["mheads", *req["argv"]]
            try:
                code = mheads.cli.commands.main(req["argv"])
            except SystemExit as exc:  # as the interpreter treats it
                code = exc.code
                if code is None:
                    code = 0
                elif not isinstance(code, int):
                    print(code, file=sys.stderr)
                    code = 1
        except BaseException:
            traceback.print_exc()  # what the interpreter prints for an uncaught exception
            code = 1
        finally:
            with __import__("contextlib").suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    print(pid, flush=True)
    print(os.waitpid(pid, 0)[1], flush=True)
"""


@dataclass
class Result:
    """How a command ended: ``returncode`` as subprocess reports it (-N: killed by signal N)."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:  # assertion messages show what happened
        return (
            f"mheads {' '.join(self.argv)} -> {self.returncode} after {self.seconds:.1f}s\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )

    @property
    def error_line(self) -> str:
        """The last stderr line, where the command line prints its one-line error."""
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


class Running:
    """A command started by :class:`CliServer`; ``wait`` once."""

    def __init__(self, server: CliServer, argv: list[str], pid: int, logs: tuple[Path, Path]):
        self.server, self.argv, self.pid, self.logs = server, argv, pid, logs
        self.started = time.monotonic()

    def done(self) -> bool:
        """Has the command ended? (Its process is gone once the server has reaped it.)"""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        return False

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # already finished and reaped
            os.kill(self.pid, signum)

    def wait(self, timeout: float = 240.0) -> Result:
        status = self.server._read_line(timeout, on_timeout=lambda: self.signal(signal.SIGKILL))
        status = int(status)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        seconds = time.monotonic() - self.started
        self.server.busy = None
        return Result(self.argv, code, self.logs[0].read_text(), self.logs[1].read_text(), seconds)


class CliServer:
    """One long-lived Python that forks a child per command; one command at a time."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None, wait: bool = True):
        """``wait=False`` returns at once: the server imports torch (seconds) while the caller goes on, and
        the first command waits for it to be ready."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {"MHEADS_CACHE": str(self.workdir / "user-cache"), **(env or {})}
        self._log = open(self.workdir / "server.log", "w+")
        self.count = 0
        self.busy: Running | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            cwd=self.workdir,
        )
        self._lines = PipeLines(self.proc.stdout)
        self.ready = False
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        if not self.ready:
            ready = self._read_line(300)
            assert ready == "ready", f"the CLI server did not start: {ready!r}"
            self.ready = True

    def _read_line(self, timeout: float, on_timeout=None) -> str:
        line = self._lines.next(timeout)
        if line is None:
            if on_timeout is not None:
                on_timeout()
                return self._read_line(30)
            raise TimeoutError(f"the CLI server said nothing for {timeout}s")
        if line == "":
            self._log.seek(0)
            raise RuntimeError(f"the CLI server died:\n{self._log.read()}")
        return line

    def start(self, *argv: str | os.PathLike, cwd: Path | None = None, env: dict | None = None) -> Running:
        assert self.busy is None, "one command at a time: wait() for the previous one"
        self.wait_ready()
        argv = [str(a) for a in argv]
        self.count += 1
        logs = (self.workdir / f"cmd{self.count}.out", self.workdir / f"cmd{self.count}.err")
        req = {
            "argv": argv,
            "cwd": str(cwd or self.workdir),
            "env": {**self.env, **(env or {})},
            "stdout": str(logs[0]),
            "stderr": str(logs[1]),
        }
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        self.busy = Running(self, argv, int(self._read_line(60)), logs)
        return self.busy

    def run(self, *argv: str | os.PathLike, timeout: float = 240.0, **kw) -> Result:
        return self.start(*argv, **kw).wait(timeout)

    def close(self) -> None:
        if self.busy is not None:  # a failed test must not leave a training process behind
            self.busy.signal(signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()
        self._log.close()


def run_module(*argv: str | os.PathLike, cwd: Path, env: dict | None = None, timeout: float = 300) -> Result:
    """A genuine ``python -m mheads ...`` process."""
    argv = [str(a) for a in argv]
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mheads", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )
    return Result(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)


# ------------------------------------------------------------------------------------------- the run

# Small enough for seconds of CPU, yet every random stream of training is used: data order, bagging,
# augmentation (crop and flip), MCL tie-breaks; a shared trunk (split at conv1) and 2 members.
SMALL_RUN = {
    "name": "reliability",
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


def streamed_sections(folder: Path) -> dict:
    """SMALL_RUN's overrides to stream a folder of varied-size JPEGs (``write_varied_folder``) with 2 worker
    processes, random-resized crops and flips."""
    return {
        "data": {
            "source": str(folder),
            "loader": "stream",
            "workers": 2,
            "image_size": 16,
            "train_crop": "random_resized",
            "crop_padding": 0,
            "train_limit": None,
            "test_limit": None,
        }
    }


def write_config(path: Path, **sections: dict) -> Path:
    """SMALL_RUN with ``section={key: value}`` overrides, written as YAML to ``path``."""
    cfg = json.loads(json.dumps(SMALL_RUN))
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def committed_steps(run: Path) -> list[int]:
    """Steps whose checkpoint folder holds a commit marker, read straight from the folder (independently of
    mheads.runs.checkpoint): a kill never damages a committed checkpoint, so the marker is enough."""
    folder = run / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name[5:]) for p in folder.glob("step-*") if (p / "COMMITTED").is_file())


def leftovers(run: Path) -> list[str]:
    """What an interrupted save left: scratch folders and step folders without a commit marker."""
    folder = run / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name.startswith((".tmp-", ".trash-")) or not (p / "COMMITTED").is_file()
    )


def fresh_tmp(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


# ---------------------------------------------------------------------------------------- kill and resume


@dataclass
class Kill:
    """Where a SIGKILL landed: seconds after the start, the newest committed checkpoint then (None: none yet),
    what the interrupted save left behind, and whether the run had already written its final weights."""

    after_s: float
    committed: int | None
    leftovers: list[str]
    finished: bool

    @property
    def phase(self) -> str:
        if self.leftovers:
            return "inside a checkpoint save"
        if self.finished:
            return "after the final weights"
        return "before the first checkpoint" if self.committed is None else f"after step {self.committed}"


def resume_argv(out: Path, config: Path) -> list:
    """``--resume`` when the run folder holds a run; when the kill came before the folder was initialised
    there is nothing to resume and the user reruns the original command."""
    if (out / "config.yaml").is_file():
        return ["train", "--resume", out, "--no-progress"]
    return ["train", "--config", config, "--out", out, "--no-progress"]


def kill_and_resume(
    server: CliServer, config: Path, out: Path, rng, duration: float, kills: int
) -> list[Kill]:
    """Train ``config`` into ``out``; SIGKILL it ``kills`` times, each at a uniformly random moment within
    ``duration`` seconds of its start, resuming after each kill; let the last resume finish. A run that
    finishes before its kill is started over (the trial must kill something). Returns where the kills landed.
    Raises AssertionError when a command fails in any other way."""
    import shutil

    while True:
        shutil.rmtree(out, ignore_errors=True)
        landed: list[Kill] = []
        argv = ["train", "--config", config, "--out", out, "--no-progress"]
        while True:
            running = server.start(*argv)
            delay = rng.uniform(0.0, duration) if len(landed) < kills else None
            if delay is not None:
                time.sleep(max(0.0, running.started + delay - time.monotonic()))
                running.signal(signal.SIGKILL)
            result = running.wait()
            if result.returncode == -signal.SIGKILL:
                steps = committed_steps(out)
                landed.append(
                    Kill(
                        delay,
                        steps[-1] if steps else None,
                        leftovers(out),
                        (out / "model.safetensors").exists(),
                    )
                )
                argv = resume_argv(out, config)
                continue
            assert result.returncode == 0, str(result)
            break
        if landed:
            return landed
        duration *= 0.7  # this machine ran faster than the calibration run: aim earlier
