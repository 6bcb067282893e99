"""The output folder of a run: resolved config, command line, git revision, logs, metrics and member weights.

Everything is written atomically (temporary name, fsync, rename), so a crash never leaves a half-written file.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save as save_safetensors

from mheads.core.atomic import OutputError, atomic_write_bytes, atomic_write_text, os_reason
from mheads.runs.entries import LOCK_FILE, RUN_FILES, RUN_FOLDERS, check_run_entries

RUN_MARKERS = ("config.yaml", "checkpoints", "metrics.json", "eval.jsonl")
# what --overwrite removes from a run folder before a new run starts there: every entry mheads writes but
# the lock, which the overwriting process holds
CLEARED_BY_OVERWRITE = tuple(name for name in (*RUN_FILES, *RUN_FOLDERS) if name != LOCK_FILE)
LAUNCH_FILE = ".torchrun-job"  # the torchrun job (TORCHELASTIC_RUN_ID) that last started training here


def record_launch(out: Path) -> None:
    """Under torchrun, note the job's id in the run folder (the root, once the folder is its): a restart of
    the same job resumes this run; another job's restart does not take it over."""
    job = os.environ.get("TORCHELASTIC_RUN_ID")
    if job:
        atomic_write_text(Path(out) / LAUNCH_FILE, job + "\n")


def restarted_here(out: Path) -> bool:
    """Whether this process is a torchrun restart (``TORCHELASTIC_RESTART_COUNT`` > 0) of the job that began
    the run in ``out`` (its :func:`record_launch` id, and a run there to resume)."""
    try:
        restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        recorded = (Path(out) / LAUNCH_FILE).read_text().strip()
    except (ValueError, OSError):
        return False
    job = os.environ.get("TORCHELASTIC_RUN_ID")
    holds_run = any((Path(out) / m).exists() for m in RUN_MARKERS)
    return restarts > 0 and bool(job) and recorded == job and holds_run


class RunExistsError(ValueError):
    """The output folder already holds a run and neither resume nor overwrite was asked for."""


def git_revision() -> str:
    """The source checkout's commit (with ``-dirty`` when modified), or 'unknown' outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def prepare_out_dir(out: str | Path, *, resume: bool, overwrite: bool) -> Path:
    """Check the output folder before any heavy work: refuse to clobber an earlier run by accident."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunExistsError(f"--out {out}: is a file; expected a folder for the run's outputs")
    holds_run = out.is_dir() and any((out / m).exists() for m in RUN_MARKERS)
    if resume:
        if not holds_run:
            raise RunExistsError(f"--resume {out}: no run there to resume (no config.yaml or checkpoints)")
        check_run_entries(out)  # a handed-over folder: no link to write through, no FIFO to hang on
        return out
    if holds_run:
        if not overwrite:
            raise RunExistsError(
                f"--out {out}: already holds a run; pass --resume to continue it or --overwrite to replace it"
            )
        # one report per evaluated data set (eval-report-<data set>.json) belongs to the run replaced
        for p in [*(out / m for m in CLEARED_BY_OVERWRITE), *out.glob("eval-report-*.json")]:
            if p.is_dir() and not p.is_symlink():  # a link is removed, never what it points to
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise RunExistsError(f"--out {out}: cannot write there ({err.strerror or err})") from None
    return out


def write_run_info(out: Path, config_yaml: str, extra: dict | None = None) -> None:
    atomic_write_text(out / "config.yaml", config_yaml)
    info = {"command": sys.argv, "git_revision": git_revision(), "hardware": hardware(), **(extra or {})}
    atomic_write_text(out / "run.json", strict_json(info, indent=2) + "\n")


def strict_json(obj, **kwargs) -> str:
    """``json.dumps`` that strict JSON readers accept: NaN and infinities (a diverged NLL, an undefined rate)
    are written as null."""
    return json.dumps(_finite(obj), allow_nan=False, **kwargs)


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line and fsync. A line cut by a crash or a full disk is skipped by :func:`read_jsonl`
    and dropped on resume (:func:`truncate_jsonl`). Raises OutputError naming the path when the OS refuses."""
    data = (strict_json(record) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {os_reason(err)}") from None


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a ``.jsonl`` run log, one per line; a line that is not a UTF-8 JSON object (cut by
    a crash mid-write, or edited) is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Keep only records up to ``max_step`` (on resume, drop what the checkpoint does not cover; an edited
    record whose step is not a number goes too)."""
    if path.exists():
        keep = [r for r in read_jsonl(path) if _step(r) <= max_step]
        atomic_write_text(path, "".join(strict_json(r) + "\n" for r in keep))


def _step(record: dict) -> float:
    step = record.get("step", 0)
    return step if isinstance(step, (int, float)) and not isinstance(step, bool) else math.inf


def save_weights(out: Path, tree) -> None:
    """``model.safetensors`` (the whole TreeNet) and ``members/member_<m>.safetensors`` (each member
    standalone, loadable into ``create_model(...)`` of the base network)."""

    def blob(sd: dict) -> bytes:
        out, seen = {}, set()
        for k, v in sd.items():
            v = v.detach().cpu().contiguous()
            ptr = v.untyped_storage().data_ptr()
            out[k] = v.clone() if v.numel() and ptr in seen else v  # safetensors refuses tied tensors
            seen.add(ptr)
        return save_safetensors(out)

    atomic_write_bytes(out / "model.safetensors", blob(tree.state_dict()))
    try:
        (out / "members").mkdir(exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot write {out / 'members'}: {os_reason(err)}") from None
    for m in range(tree.num_members):
        atomic_write_bytes(out / "members" / f"member_{m}.safetensors", blob(tree.member(m).state_dict()))


NORMALIZER_FILE = "normalizer.safetensors"
CALIBRATION_FILE = "calibration.json"
UNCERTAINTY_FILE = "uncertainty.json"  # the uncertainty report of a run with a held-out or open-set split


def save_normalizer(out: Path, normalizer) -> None:
    """The run's input normalization (fitted on its training images), so ``mheads predict`` needs no data."""
    state = normalizer.to_dict()
    data = save_safetensors(
        {"shift": state["shift"].contiguous(), "scale": state["scale"].contiguous()},
        metadata={"mode": state["mode"]},
    )
    atomic_write_bytes(Path(out) / NORMALIZER_FILE, data)


def save_calibration(out: Path, calibration: dict) -> None:
    atomic_write_text(Path(out) / CALIBRATION_FILE, strict_json(calibration, indent=2) + "\n")
