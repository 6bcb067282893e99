"""Run a piece of Python (or an ``mheads`` command) in a child process under an address-space cap, so that a
regression that allocates a size read from hostile input fails the test (MemoryError, a clean error or a
non-zero exit) instead of taking the machine down."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAP = 3 * 2**30  # torch and mheads import in well under 2 GiB of address space on the CPU build


def _limit(cap: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    return apply


def run_capped(
    args: list[str],
    *,
    cap: int = CAP,
    timeout: float = 120.0,
    cwd: Path | None = None,
    env: dict | None = None,
    stdin=None,
) -> subprocess.CompletedProcess:
    """``python args...`` (``["-c", code]`` or ``["-m", "mheads", ...]``) under ``cap`` bytes of address
    space."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        preexec_fn=_limit(cap),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=full_env,
        stdin=stdin,
    )


def mheads_capped(*argv: str | os.PathLike, **kw) -> subprocess.CompletedProcess:
    """``python -m mheads argv...`` under the cap."""
    return run_capped(["-m", "mheads", *map(str, argv)], **kw)
