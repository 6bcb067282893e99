"""Run a piece of Python (or an ``mheads`` command) in a child process under an address-space cap, so that a
regression that allocates a size read from hostile input fails the test (MemoryError, a clean error or a
non-zero exit) instead of taking the machine down.

Starting a Python that imports torch costs seconds, so one server process per test session imports torch and
mheads once and forks a child per call (as ``tests/cli_harness.py`` does for the command line). The child sets
the cap, its working folder, environment, ``sys.argv`` and standard streams, then runs the code as
``python -c`` or ``python -m`` would (``SystemExit`` and uncaught exceptions included): a separate process
under the cap, with the imports already done."""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAP = 3 * 2**30  # torch and mheads import in well under 2 GiB of address space on the CPU build

SERVER = r"""
import json, os, resource, runpy, sys, traceback
import torch  # the expensive imports, done once; the children inherit them
import torch._dynamo  # torch.optim imports it on first use: seconds
import mheads, mheads.cli.commands, mheads.data, mheads.infer.evaluate, mheads.train.loop

def child(req):
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, name in ((1, req["stdout"]), (2, req["stderr"])):
        f = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    resource.setrlimit(resource.RLIMIT_AS, (req["cap"], req["cap"]))
    flag, what, *rest = req["args"]
    if flag == "-c":
        sys.argv = ["-c", *rest]
        exec(compile(what, "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    else:  # -m: runpy sets sys.argv[0] to the module's file, as the interpreter does
        sys.argv = [what, *rest]
        runpy.run_module(what, run_name="__main__", alter_sys=True)
    return 0

print("ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                code = child(req)
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
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    print(pid, flush=True)
    print(os.waitpid(pid, 0)[1], flush=True)
"""


class PipeLines:
    """Lines from a child's stdout pipe, read with ``select`` and ``os.read`` into a buffer of our own: a
    buffered ``readline()`` may take in two lines that arrive together (a fork's pid and, from a fast child,
    its exit status), and ``select`` then waits for the second one in vain."""

    def __init__(self, stream) -> None:
        self.fd, self.buf = stream.fileno(), b""

    def next(self, timeout: float) -> str | None:
        """The next line; None after ``timeout`` seconds without one; "" once the writer closed the pipe."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return ""
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode().strip()


class _Server:
    """The forking server: one call at a time (the tests run one at a time)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="memcap-"))
        self.log = open(self.dir / "server.log", "w+")
        self.count = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO / "tests")},
        )
        self.lines = PipeLines(self.proc.stdout)
        self.ready = False

    def wait_ready(self) -> None:
        if not self.ready:
            ready = self.read_line(300)
            assert ready == "ready", f"the memcap server did not start: {ready!r}"
            self.ready = True

    def read_line(self, timeout: float) -> str | None:
        """The server's next line; None after ``timeout`` seconds of silence."""
        line = self.lines.next(timeout)
        if line == "":
            self.log.seek(0)
            raise RuntimeError(f"the memcap server died:\n{self.log.read()}")
        return line

    def run(self, args: list[str], cap: int, timeout: float, cwd: Path | None, env: dict) -> tuple:
        """``(returncode, stdout, stderr)`` of ``args`` run in a forked child; TimeoutExpired (the child
        killed) after ``timeout`` seconds."""
        self.count += 1
        out, err = self.dir / f"call{self.count}.out", self.dir / f"call{self.count}.err"
        req = {"args": args, "cap": cap, "cwd": str(cwd or os.getcwd()), "env": env}
        self.proc.stdin.write(json.dumps({**req, "stdout": str(out), "stderr": str(err)}) + "\n")
        self.proc.stdin.flush()
        started = self.read_line(60)
        assert started is not None, "the memcap server did not fork a child within 60 s"
        pid = int(started)
        try:
            status = self.read_line(timeout)
        except BaseException:  # interrupted (a test timeout, Ctrl-C): leave no capped child behind
            os.kill(pid, signal.SIGKILL)
            raise
        if status is None:
            os.kill(pid, signal.SIGKILL)
            self.read_line(30)  # the server reaps it
            raise subprocess.TimeoutExpired(
                [sys.executable, *args], timeout, out.read_text(), err.read_text()
            )
        code = int(status)
        code = -os.WTERMSIG(code) if os.WIFSIGNALED(code) else os.WEXITSTATUS(code)
        return code, out.read_text(), err.read_text()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.log.close()


_server: _Server | None = None


def prestart() -> None:
    """Start the server without waiting for it: its imports (seconds) overlap the tests that run before its
    first call (tests/conftest.py calls this when the session has a test that runs capped)."""
    global _server
    if _server is None or _server.proc.poll() is not None:
        _server = _Server()
        atexit.register(_server.close)


def _get_server() -> _Server:
    prestart()
    assert _server is not None
    _server.wait_ready()
    return _server


def run_capped(
    args: list[str],
    *,
    cap: int = CAP,
    timeout: float = 120.0,
    cwd: Path | None = None,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """``python args...`` (``["-c", code, ...]`` or ``["-m", module, ...]``) under ``cap`` bytes of address
    space, in a child forked from the server (``sys.executable`` with tests/ on ``PYTHONPATH``)."""
    if len(args) < 2 or args[0] not in ("-c", "-m"):
        raise ValueError(f"args: got {args[:2]!r}; expected ['-c', code, ...] or ['-m', module, ...]")
    global _server
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), **(env or {})}
    server = _get_server()
    try:
        code, out, err = server.run([str(a) for a in args], cap, timeout, cwd, full_env)
    except subprocess.TimeoutExpired:  # the child killed and reaped: the server goes on
        raise
    except BaseException:  # its replies may now be out of step with the requests: start afresh next time
        server.close()
        _server = None
        raise
    return subprocess.CompletedProcess([sys.executable, *args], code, out, err)


def mheads_capped(*argv: str | os.PathLike, **kw) -> subprocess.CompletedProcess:
    """``python -m mheads argv...`` under the cap."""
    return run_capped(["-m", "mheads", *map(str, argv)], **kw)
