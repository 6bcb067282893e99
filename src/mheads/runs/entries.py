"""A run folder's own files, checked before a command reads or writes them: a folder someone hands over is
data, and each of its entries must be a regular file (or folder) of the folder itself.

A symbolic link would have mheads read a file elsewhere as the run's, or write through it outside the folder
(``plots/`` linked elsewhere received the figures of ``mheads eval`` and ``mheads plot``, ``checkpoints/``
the checkpoints of ``train --resume``); a FIFO or a device named ``run.json`` would hang the read, or never
end it (``/dev/zero``). ``run.json`` and ``metrics.json`` are read only up to :data:`MAX_RUN_JSON_BYTES`.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from mheads.config import ConfigError
from mheads.core.atomic import os_reason
from mheads.data.errors import DataError
from mheads.data.files import read_regular
from mheads.runs.checkpoint_format import CheckpointError

__all__ = [
    "LOCK_FILE",
    "MAX_RUN_JSON_BYTES",
    "RUN_FILES",
    "RUN_FOLDERS",
    "check_run_entries",
    "read_run_file",
    "read_run_json",
]

LOCK_FILE = ".mheads.lock"  # runs.lock's; named here, below it, so that RUN_FILES can list it
# Every file and folder mheads writes into a run folder (all of them but the lock are what --overwrite
# clears: runs.folder.CLEARED_BY_OVERWRITE), and the per-data-set evaluation reports eval-report-<name>.json.
RUN_FILES = (
    "config.yaml",
    "run.json",
    "metrics.json",
    "eval.jsonl",
    "train.jsonl",
    "model.safetensors",
    "normalizer.safetensors",
    "calibration.json",
    "uncertainty.json",
    "config_history.jsonl",
    "eval-report.json",
    ".torchrun-job",
    LOCK_FILE,
)
RUN_FOLDERS = ("checkpoints", "members", "plots")
MAX_RUN_JSON_BYTES = 64 << 20  # a real run.json is a few KiB; 21,841 ImageNet class names are under 1 MiB


def check_run_entries(run: str | os.PathLike) -> None:
    """Raise ``CheckpointError`` (one line naming the entry) when an entry of the run folder ``run`` that
    mheads reads or writes is a symbolic link, or a file entry is not a regular file (a FIFO, a device, a
    folder), or a folder entry is not a folder. Entries that do not exist are fine."""
    run = Path(run)
    try:
        entries = list(os.scandir(run))
    except FileNotFoundError:
        return
    except OSError as err:
        raise CheckpointError(f"{run}: cannot list the run folder ({os_reason(err)})") from None
    for e in entries:
        report = e.name.startswith("eval-report") and e.name.endswith(".json")
        is_file, is_folder = e.name in RUN_FILES or report, e.name in RUN_FOLDERS
        if not (is_file or is_folder):
            continue
        mode = e.stat(follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            what = "a symbolic link"
        elif is_file and not stat.S_ISREG(mode):
            what = "not a regular file"
        elif is_folder and not stat.S_ISDIR(mode):
            what = "not a folder"
        else:
            continue
        raise CheckpointError(
            f"{e.path}: is {what}; a run folder's entries must be its own regular files and folders "
            "(a link would have mheads read or write outside the folder, a FIFO or device hang it): "
            "remove it, or ask for the run folder again"
        )


def read_run_json(run: str | os.PathLike) -> dict:
    """The run's ``run.json`` as a JSON object (:func:`read_run_file`). Raises ``ConfigError`` (one line
    naming the file) when it is missing, too large or not a UTF-8 JSON object."""
    return read_run_file(run, "run.json")


# what each JSON file of a run folder holds, as its errors name it
_DESCRIBED = {"run.json": "run description", "metrics.json": "final metrics"}


def read_run_file(run: str | os.PathLike, name: str) -> dict:
    """The run folder's JSON file ``name`` (``run.json``, ``metrics.json``) as a JSON object, after
    :func:`check_run_entries`; read by ``data.files.read_regular``: a FIFO or device refused before it is
    opened, at most :data:`MAX_RUN_JSON_BYTES` read. Raises ``ConfigError`` (one line naming the file) when
    it is missing, unreadable, too large or not a UTF-8 JSON object."""
    run = Path(run)
    check_run_entries(run)
    path, what = run / name, _DESCRIBED.get(name, "record")
    try:
        data = read_regular(path, str(path), max_bytes=MAX_RUN_JSON_BYTES)
    except DataError as err:
        if isinstance(err.__cause__, FileNotFoundError):
            where = f"--run {run}: no {name}"
            raise ConfigError(f"{where}; is it a run folder written by `mheads train`?") from None
        raise ConfigError(str(err)) from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        doc = err
    if not isinstance(doc, dict):
        got = f"{type(doc).__name__}: {str(doc)[:100]}" if isinstance(doc, ValueError) else type(doc).__name__
        raise ConfigError(
            f"{path}: unreadable {what} ({got}); expected the UTF-8 JSON object `mheads train` writes"
        )
    return doc
