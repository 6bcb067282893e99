"""The on-disk format of a checkpoint, shared by saving (`mheads.runs.checkpoint`) and loading
(`mheads.runs.checkpoint_load`): file and folder names, schema versions, the errors and the loaded
`Checkpoint`, and the scan for step folders.

Layout of a run folder::

    run_dir/checkpoints/step-00001000/
        weights.safetensors   # model weights, dense CPU tensors
        state.pt              # torch.save of plain data: step, optimizer, schedule, loss and time counters
        meta.json             # {"schema_version", "step", "meta": caller's dict (architecture, members, ...)}
        COMMITTED             # written last: sha256 and size of the three files above
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mheads.core.atomic import OutputError, os_reason

__all__ = [
    "CHECKPOINTS_DIR",
    "COMMIT_FILE",
    "DATA_FILES",
    "DEFAULT_COMPAT_KEYS",
    "META_FILE",
    "SCHEMA_VERSION",
    "STATE_FILE",
    "SUPPORTED_SCHEMA_VERSIONS",
    "WEIGHTS_FILE",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMismatch",
    "CheckpointWriteError",
]

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
CHECKPOINTS_DIR = "checkpoints"
WEIGHTS_FILE = "weights.safetensors"
STATE_FILE = "state.pt"
META_FILE = "meta.json"
COMMIT_FILE = "COMMITTED"
DATA_FILES = (WEIGHTS_FILE, STATE_FILE, META_FILE)
# Keys absent from both sides are skipped, so this also suits callers that record fewer of them.
DEFAULT_COMPAT_KEYS = (
    "architecture",
    "members",
    "split",
    "num_classes",
    "in_channels",
    "image_size",
    "options",
    "scoring_heads",
)

_STEP_DIR = re.compile(r"step-(\d{8,})")
# Leftovers of an interrupted save (.tmp-) or prune (.trash-): never read, removed by a later save.
_SCRATCH_DIR = re.compile(r"\.(?:tmp|trash)-step-(\d{8,})-[0-9a-f]+")


class CheckpointError(ValueError):
    """A checkpoint cannot be used (missing, partial, corrupt, unsafe, incompatible); names the path."""


class CheckpointMismatch(CheckpointError):
    """Checkpoint metadata differs from the configuration. `differences`: {key: (in checkpoint, expected)}."""

    def __init__(self, message: str, differences: dict[str, tuple[Any, Any]]):
        super().__init__(message)
        self.differences = differences


class CheckpointWriteError(CheckpointError, OutputError):
    """Saving failed in the OS (full disk, no permission); previously committed checkpoints are intact."""


@dataclass(frozen=True)
class Checkpoint:
    """A verified, loaded checkpoint. `weights` come back sorted by name; `meta` is the caller's dict."""

    step: int
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]
    meta: dict[str, Any]
    path: Path


def _step_name(step: int) -> str:
    return f"step-{step:08d}"


def _step_dirs(ckdir: Path) -> list[tuple[int, Path]]:
    return sorted((step, path) for step, path in _scan(ckdir, _STEP_DIR))


def _scan(ckdir: Path, pattern: re.Pattern[str]) -> Iterable[tuple[int, Path]]:
    try:
        entries = list(os.scandir(ckdir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise CheckpointError(f"cannot list checkpoints in {ckdir}: {os_reason(exc)}") from exc
    return [
        (int(m.group(1)), Path(e.path))
        for e in entries
        if (m := pattern.fullmatch(e.name)) and e.is_dir(follow_symlinks=False)
    ]


def _io_reason(exc: BaseException) -> str:
    if isinstance(exc, OutputError):
        return str(exc)
    assert isinstance(exc, OSError)
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{os_reason(exc)}"


def _describe(obj: Any) -> str:
    kind = type(obj)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"a {name}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
