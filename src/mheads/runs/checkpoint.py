"""Atomic checkpoint save, listing and pruning; loading and validation live in `mheads.runs.checkpoint_load`
and the on-disk format (layout, file names, errors) in `mheads.runs.checkpoint_format`, both re-exported here.

A checkpoint counts only once `COMMITTED` exists and every checksum matches. It is written in a
hidden temporary folder, fsynced, renamed into place, and only then marked committed, so a process
killed at any instant leaves either a complete checkpoint or one that every reader skips.

`save_checkpoint` refuses state that `torch.load(weights_only=True)` could not read back (numpy arrays,
arbitrary objects) before anything is written, and loading runs no code from a file. One writer per run
folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import secrets
import shutil
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from mheads.core.atomic import OutputError, atomic_write_bytes, fsync_dir, os_reason, write_durable
from mheads.core.checks import check_int
from mheads.runs.checkpoint_format import (
    _SCRATCH_DIR,
    _STEP_DIR,
    CHECKPOINTS_DIR,
    COMMIT_FILE,
    DATA_FILES,
    DEFAULT_COMPAT_KEYS,
    META_FILE,
    SCHEMA_VERSION,
    STATE_FILE,
    WEIGHTS_FILE,
    Checkpoint,
    CheckpointError,
    CheckpointMismatch,
    CheckpointWriteError,
    _describe,
    _io_reason,
    _scan,
    _step_dirs,
    _step_name,
)
from mheads.runs.checkpoint_load import (  # loading and validation, re-exported for callers of this module
    _marked_committed,
    _problem,
    check_compatible,
    load_checkpoint,
    load_latest,
)

__all__ = [
    "CHECKPOINTS_DIR",
    "DEFAULT_COMPAT_KEYS",
    "SCHEMA_VERSION",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMismatch",
    "CheckpointWriteError",
    "check_compatible",
    "load_latest",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

_PLAIN = (bool, int, float, str, type(None))


# ----------------------------------------------------------------------------------------------- save


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    weights: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    meta: Mapping[str, Any],
    keep: int = 3,
    pinned: Iterable[int] = (),
) -> Path:
    """Write `run_dir/checkpoints/step-{step:08d}/` atomically, then prune to the newest `keep`.

    weights: {name: dense tensor} (any device; stored contiguous on CPU).
    state: nested dicts/lists/tuples whose leaves are tensors, int, float, bool, str or None.
    meta: JSON data (str keys; finite numbers) describing the run: architecture, members, split, ...
    keep: committed checkpoints to keep, >= 2 (the newest is never deleted).
    pinned: steps whose committed checkpoints are never pruned, besides the newest `keep`.

    Returns the checkpoint folder. Saving a step that is already committed with identical content
    does nothing; with different content it raises CheckpointError. Raises CheckpointError for
    invalid arguments (before touching the disk) and CheckpointWriteError when the OS refuses a write;
    in every case previously committed checkpoints are intact and no temporary folder is left behind.
    """
    check_int("step", step, 0, error=CheckpointError)
    check_int("keep (the newest is never deleted)", keep, 2, error=CheckpointError)
    # Serialize everything first: a bad argument must fail before the disk is touched.
    blobs, digests = _serialize(step, weights, state, meta)
    marker = _json_bytes({"schema_version": SCHEMA_VERSION, "step": step, "files": digests})
    ckdir = Path(run_dir) / CHECKPOINTS_DIR
    final = ckdir / _step_name(step)
    if _already_saved(final, step, digests):
        return final
    _write_committed(ckdir, final, blobs, marker)
    _prune(ckdir, keep, frozenset(pinned))
    return final


def _serialize(
    step: int, weights: Mapping[str, torch.Tensor], state: Mapping[str, Any], meta: Mapping[str, Any]
) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """The bytes of each data file of step `step`, and their digests; raises CheckpointError for state that
    cannot be stored (nothing is written yet)."""
    meta_doc = {"schema_version": SCHEMA_VERSION, "step": step, "meta": _plain_json(meta, "meta")}
    blobs = {
        WEIGHTS_FILE: _weights_bytes(weights),
        STATE_FILE: _state_bytes(state),
        META_FILE: _json_bytes(meta_doc),
    }
    return blobs, {name: _digest(data) for name, data in blobs.items()}


def _already_saved(final: Path, step: int, digests: Mapping[str, Any]) -> bool:
    """True when `final` is committed with these digests; CheckpointError when committed with others.

    A committed checkpoint is never replaced. Saving the same step twice (e.g. SIGTERM right after a
    periodic save) is fine when the content is identical, as it is in a deterministic run."""
    if not (final.is_dir() and _problem(final) is None):
        return False
    saved = json.loads((final / COMMIT_FILE).read_bytes())["files"]
    differing = [name for name in DATA_FILES if saved[name] != digests[name]]
    if differing:
        raise CheckpointError(
            f"{final} already holds a committed checkpoint of step {step} with a different "
            f"{', '.join(differing)}; not overwriting it"
        )
    return True


def _write_committed(ckdir: Path, final: Path, blobs: Mapping[str, bytes], marker: bytes) -> None:
    """Write `blobs` into a hidden folder, fsync it, rename it to `final`, then write the `COMMITTED`
    `marker`. On any failure the folder is removed again (an OS error raised as CheckpointWriteError)."""
    token = secrets.token_hex(4)
    tmp = ckdir / f".tmp-{final.name}-{token}"
    written = None  # the folder to remove if anything fails
    try:
        ckdir.mkdir(parents=True, exist_ok=True)
        os.mkdir(tmp)
        written = tmp
        for name, data in blobs.items():
            write_durable(tmp / name, data)
        fsync_dir(tmp)
        if final.exists():  # a partial or corrupt folder of the same step, e.g. from a killed run
            os.rename(final, ckdir / f".trash-{final.name}-{token}")
        os.rename(tmp, final)
        written = final
        fsync_dir(ckdir)
        atomic_write_bytes(final / COMMIT_FILE, marker)
    except BaseException as exc:
        if written is not None:
            try:
                _discard(written)
            except OSError:
                shutil.rmtree(written, ignore_errors=True)  # leftovers are skipped, pruned later
        if isinstance(exc, (OSError, OutputError)):
            raise CheckpointWriteError(f"cannot save checkpoint {final}: {_io_reason(exc)}") from exc
        raise


def _digest(data: bytes) -> dict[str, Any]:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _weights_bytes(weights: Mapping[str, torch.Tensor]) -> bytes:
    if not isinstance(weights, Mapping):
        raise CheckpointError(f"weights must be a dict of tensors, got {type(weights).__name__}")
    out: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for name, t in weights.items():
        if type(name) is not str:
            raise CheckpointError(f"weights keys must be str, got {type(name).__name__} {name!r}")
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
            raise CheckpointError(f"weights[{name!r}] must be a dense tensor, got {_describe(t)}")
        t = t.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and ptr in storages:
            t = t.clone()  # safetensors refuses tensors that share memory (tied weights)
        storages.add(ptr)
        out[name] = t
    return safetensors.torch.save(out)


def _state_bytes(state: Mapping[str, Any]) -> bytes:
    if type(state) not in (dict, OrderedDict):
        raise CheckpointError(f"state must be a dict, got {type(state).__name__}")
    buf = io.BytesIO()
    torch.save(_plain_state(state, "state"), buf)
    return buf.getvalue()


def _plain_state(obj: Any, where: str) -> Any:
    """Copy of `obj` that `torch.load(weights_only=True)` reads back; tensors detached, on CPU."""
    kind = type(obj)
    if kind in _PLAIN:
        return obj
    if kind in (torch.Tensor, torch.nn.Parameter) and obj.layout == torch.strided:
        return obj.detach().to("cpu")
    if kind in (dict, OrderedDict):
        out = kind()
        for key, value in obj.items():
            if type(key) not in (str, int):
                key_type = type(key).__name__
                raise CheckpointError(f"{where} has key {key!r} of type {key_type}; keys must be str or int")
            out[key] = _plain_state(value, f"{where}[{key!r}]")
        return out
    if kind in (list, tuple):
        return kind(_plain_state(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise CheckpointError(
        f"{where} is {_describe(obj)}; state may hold only dense tensors, int, float, bool, str, None and "
        "dicts/lists/tuples of those (convert numpy arrays with torch.from_numpy)"
    )


def _plain_json(obj: Any, where: str) -> Any:
    kind = type(obj)
    if kind is float and not math.isfinite(obj):
        raise CheckpointError(f"{where} is {obj!r}; meta numbers must be finite")
    if kind in _PLAIN:
        return obj
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if type(key) is not str:
                key_type = type(key).__name__
                raise CheckpointError(f"{where} has key {key!r} of type {key_type}; meta keys must be str")
            out[key] = _plain_json(value, f"{where}[{key!r}]")
        return out
    if kind in (list, tuple):
        return [_plain_json(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    allowed = "str, int, float, bool, None and lists/dicts of those"
    raise CheckpointError(f"{where} is {_describe(obj)}; meta may hold only {allowed}")


def _json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


# ------------------------------------------------------------------------------------- list and prune


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Committed checkpoints of `run_dir` whose checksums match, oldest first ([] if there are none)."""
    return [path for _, path in _step_dirs(Path(run_dir) / CHECKPOINTS_DIR) if _problem(path) is None]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest committed checkpoint of `run_dir` whose checksums match, or None."""
    for _, path in reversed(_step_dirs(Path(run_dir) / CHECKPOINTS_DIR)):
        problem = _problem(path)
        if problem is None:
            return path
        log.info("skipping checkpoint %s: %s", path, problem)
    return None


def _prune(ckdir: Path, keep: int, pinned: frozenset = frozenset()) -> None:
    """Keep the newest `keep` committed checkpoints and those of the `pinned` steps; drop everything else
    older than the newest committed one.

    Best effort: the new checkpoint is already committed, so a failed deletion is logged, not raised.
    """
    steps = _step_dirs(ckdir)
    # Checked by marker and sizes only: hashing every kept checkpoint on every save would read gigabytes for a
    # large model. The checkpoint just written was hashed as it was written; each is verified again when read.
    committed = [(s, p) for s, p in steps if _marked_committed(p)]
    if not committed:
        return
    newest = committed[-1][0]
    kept = {p for _, p in committed[-keep:]} | {p for s, p in committed if s in pinned}
    doomed = [p for s, p in steps if s < newest and p not in kept]
    # Scratch folders of the newest step or older belong to saves that can no longer finish.
    doomed += [p for s, p in _scan(ckdir, _SCRATCH_DIR) if s <= newest]
    for path in doomed:
        try:
            _discard(path)
        except OSError as exc:
            log.warning("could not delete old checkpoint folder %s: %s", path, os_reason(exc))


def _discard(path: Path) -> None:
    """Delete a folder; a step-* folder is renamed to scratch first, so a kill cannot leave half of it."""
    if m := _STEP_DIR.fullmatch(path.name):
        trash = path.with_name(f".trash-step-{m.group(1)}-{secrets.token_hex(4)}")
        os.rename(path, trash)
        path = trash
    shutil.rmtree(path)
