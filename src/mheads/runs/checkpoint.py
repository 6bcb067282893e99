"""Atomic checkpoint save, safe load, listing and pruning.

Layout of a run folder::

    run_dir/checkpoints/step-00001000/
        weights.safetensors   # model weights, dense CPU tensors
        state.pt              # torch.save of plain data: step, optimizer, schedule, loss and time counters
        meta.json             # {"schema_version", "step", "meta": caller's dict (architecture, members, ...)}
        COMMITTED             # written last: sha256 and size of the three files above

A checkpoint counts only once `COMMITTED` exists and every checksum matches. It is written in a
hidden temporary folder, fsynced, renamed into place, and only then marked committed, so a process
killed at any instant leaves either a complete checkpoint or one that every reader skips.

Nothing here runs code from a file: weights are read with safetensors and state with
`torch.load(weights_only=True)`; `save_checkpoint` refuses state that such a load could not read
back (numpy arrays, arbitrary objects) before anything is written. One writer per run folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import secrets
import shutil
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from mheads.core.checks import check_int
from mheads.core.atomic import OutputError, atomic_write_bytes, fsync_dir, os_reason, write_durable

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
    "architecture", "members", "split", "num_classes", "in_channels", "image_size", "options", "scoring_heads"
)

_STEP_DIR = re.compile(r"step-(\d{8,})")
# Leftovers of an interrupted save (.tmp-) or prune (.trash-): never read, removed by a later save.
_SCRATCH_DIR = re.compile(r"\.(?:tmp|trash)-step-(\d{8,})-[0-9a-f]+")
_PLAIN = (bool, int, float, str, type(None))
_MISSING = object()


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
    meta_doc = {"schema_version": SCHEMA_VERSION, "step": step, "meta": _plain_json(meta, "meta")}
    blobs = {
        WEIGHTS_FILE: _weights_bytes(weights),
        STATE_FILE: _state_bytes(state),
        META_FILE: _json_bytes(meta_doc),
    }
    digests = {name: _digest(data) for name, data in blobs.items()}
    marker = _json_bytes({"schema_version": SCHEMA_VERSION, "step": step, "files": digests})
    ckdir = Path(run_dir) / CHECKPOINTS_DIR
    final = ckdir / _step_name(step)
    if final.is_dir() and _problem(final) is None:
        # A committed checkpoint is never replaced. Saving the same step twice (e.g. SIGTERM right after a
        # periodic save) is fine when the content is identical, as it is in a deterministic run.
        saved = json.loads((final / COMMIT_FILE).read_bytes())["files"]
        differing = [name for name in DATA_FILES if saved[name] != digests[name]]
        if differing:
            raise CheckpointError(
                f"{final} already holds a committed checkpoint of step {step} with a different "
                f"{', '.join(differing)}; not overwriting it"
            )
        return final

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
    _prune(ckdir, keep, frozenset(pinned))
    return final


def _digest(data: bytes) -> dict[str, Any]:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _step_name(step: int) -> str:
    return f"step-{step:08d}"


def _io_reason(exc: BaseException) -> str:
    if isinstance(exc, OutputError):
        return str(exc)
    assert isinstance(exc, OSError)
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{os_reason(exc)}"


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


def _describe(obj: Any) -> str:
    kind = type(obj)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"a {name}"


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


# ----------------------------------------------------------------------------------------------- load


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint folder, or the newest committed checkpoint of a run folder.

    Verifies the commit marker and every checksum before parsing anything; weights are read with
    safetensors and state with `torch.load(weights_only=True)`, so a crafted file cannot run code.
    Raises CheckpointError (one line, naming the path) if the checkpoint cannot be used.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a folder; expected a checkpoint folder or a run folder")
    if _STEP_DIR.fullmatch(path.name) or any((path / n).exists() for n in (COMMIT_FILE, *DATA_FILES)):
        folder = path
    elif (path / CHECKPOINTS_DIR).is_dir():
        found = _load_newest(path / CHECKPOINTS_DIR)
        if isinstance(found, Checkpoint):
            return found
        detail = f" (skipped {'; '.join(found)})" if found else ""
        raise CheckpointError(f"no committed checkpoint in {path / CHECKPOINTS_DIR}{detail}")
    else:
        raise CheckpointError(
            f"{path} is neither a checkpoint folder (no {COMMIT_FILE}, {WEIGHTS_FILE}, ...) "
            f"nor a run folder (no {CHECKPOINTS_DIR}/ inside)"
        )

    return _load_folder(folder)


def load_latest(run_dir: str | os.PathLike) -> Checkpoint | None:
    """The newest usable checkpoint of a run folder, each file read and verified once; None when the run never
    committed one (killed before its first save: it starts over). A run whose committed checkpoints are all
    damaged is refused, naming what is wrong with each, rather than silently restarted from scratch."""
    ckdir = Path(run_dir) / CHECKPOINTS_DIR
    found = _load_newest(ckdir)
    if isinstance(found, Checkpoint):
        return found
    if any((p / COMMIT_FILE).is_file() for _, p in _step_dirs(ckdir)):
        raise CheckpointError(f"no committed checkpoint in {ckdir} (skipped {'; '.join(found)})")
    return None


def _load_newest(ckdir: Path) -> Checkpoint | list[str]:
    """The newest committed checkpoint in ``ckdir`` whose files match their checksums, or why each one did not
    (newest first). Only an incomplete or damaged checkpoint is skipped: one whose verified content is refused
    (an unsafe pickle, malformed data) raises, rather than silently resuming from an older one."""
    problems = []
    for _, folder in reversed(_step_dirs(ckdir)):
        try:
            blobs = _read_verified(folder)
        except CheckpointError as exc:
            log.info("skipping checkpoint %s: %s", folder, exc)
            problems.append(f"{folder.name}: {exc}")
            continue
        return _parse_checkpoint(folder, blobs)
    return problems


def _load_folder(folder: Path) -> Checkpoint:
    return _parse_checkpoint(folder, _read_verified(folder))


def _parse_checkpoint(folder: Path, blobs: dict[str, bytes]) -> Checkpoint:
    doc = _parse_json(blobs[META_FILE], folder / META_FILE)
    if not isinstance(doc, dict) or type(doc.get("step")) is not int or not isinstance(doc.get("meta"), dict):
        raise CheckpointError(f"{folder / META_FILE} lacks an int 'step' and a 'meta' object")
    _check_schema(doc.get("schema_version"), folder / META_FILE)
    try:
        weights = dict(sorted(safetensors.torch.load(blobs[WEIGHTS_FILE]).items()))  # file order is by dtype
    except Exception as exc:  # safetensors raises its own error type for any malformed header
        bad = folder / WEIGHTS_FILE
        raise CheckpointError(f"{bad} is not a valid safetensors file: {_one_line(exc)}") from exc
    state = _safe_torch_load(blobs[STATE_FILE], folder / STATE_FILE)
    return Checkpoint(step=doc["step"], weights=weights, state=state, meta=doc["meta"], path=folder)


def _safe_torch_load(data: bytes, path: Path) -> dict[str, Any]:
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "WeightsUnpickler error" in text or "Unsupported" in text:
            raise CheckpointError(
                f"{path} was refused by the safe loader: it holds more than plain tensors and numbers "
                f"({_unpickler_reason(text)}); mheads never loads such files"
            ) from exc
        raise CheckpointError(f"{path} cannot be read as torch.save data: {_one_line(exc)}") from exc
    if type(state) not in (dict, OrderedDict):
        raise CheckpointError(f"{path} holds {_describe(state)}, expected a dict")
    return state


def _unpickler_reason(text: str) -> str:
    # torch's message is several lines and suggests weights_only=False; keep only the cause.
    tail = text.split("WeightsUnpickler error:", 1)[-1]
    for stop in ("Please use", "Check the documentation"):
        tail = tail.split(stop, 1)[0]
    return " ".join(tail.split()) or "unsupported content"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _parse_json(data: bytes, path: Path) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {_one_line(exc)}") from exc


def _check_schema(version: Any, path: Path) -> None:
    if version not in SUPPORTED_SCHEMA_VERSIONS or type(version) is not int:
        raise CheckpointError(
            f"{path} has schema version {version!r}; "
            f"this version of mheads reads {list(SUPPORTED_SCHEMA_VERSIONS)}"
        )


def _marked_committed(folder: Path) -> bool:
    """Committed as far as the marker and the file sizes tell, without reading the data."""
    try:
        marker = json.loads((folder / COMMIT_FILE).read_bytes())
        if marker.get("schema_version") not in SUPPORTED_SCHEMA_VERSIONS:
            return False
        return all((folder / n).stat().st_size == marker["files"][n]["bytes"] for n in DATA_FILES)
    except (OSError, ValueError, TypeError, KeyError):
        return False


def _problem(folder: Path) -> str | None:
    """Why `folder` is not a usable committed checkpoint, or None if it is."""
    try:
        _read_verified(folder)
    except CheckpointError as exc:
        return str(exc)
    return None


def _read_verified(folder: Path) -> dict[str, bytes]:
    """The data files of a committed checkpoint, each checked against the commit marker."""
    marker_path = folder / COMMIT_FILE
    if not marker_path.is_file():
        raise CheckpointError(
            f"{folder} is not committed (no {COMMIT_FILE} marker: its save was interrupted or is running)"
        )
    try:
        marker = _parse_json(marker_path.read_bytes(), marker_path)
        if not isinstance(marker, dict):
            raise CheckpointError(f"{marker_path} is not a commit marker (expected a JSON object)")
        _check_schema(marker.get("schema_version"), marker_path)
        files = marker.get("files")
        if not isinstance(files, dict) or any(
            not isinstance(files.get(n), dict)
            or type(files[n].get("bytes")) is not int
            or not isinstance(files[n].get("sha256"), str)
            for n in DATA_FILES
        ):
            raise CheckpointError(f"{marker_path} lacks the size and sha256 of {', '.join(DATA_FILES)}")
        blobs = {}
        for name in DATA_FILES:
            path, want = folder / name, files[name]
            if not path.is_file():
                raise CheckpointError(f"{path} is missing")
            data = path.read_bytes()
            if len(data) != want["bytes"]:
                size, wanted = len(data), want["bytes"]
                what = "is empty" if not size else "is truncated" if size < wanted else "is too long"
                raise CheckpointError(f"{path} {what}: {size} bytes, the commit marker says {wanted}")
            if hashlib.sha256(data).hexdigest() != want["sha256"]:
                raise CheckpointError(f"{path} fails its sha256 checksum: it changed or was corrupted")
            blobs[name] = data
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {folder}: {_io_reason(exc)}") from exc
    return blobs


# -------------------------------------------------------------------------------------- compatibility


def check_compatible(
    meta: Mapping[str, Any],
    expected: Mapping[str, Any],
    keys: Iterable[str] | None = DEFAULT_COMPAT_KEYS,
    where: str | os.PathLike | None = None,
) -> None:
    """Raise CheckpointMismatch naming every key in `keys` whose value differs (None: all keys of `expected`).

    meta: a checkpoint's meta; expected: the same keys built from the current configuration. A key
    absent from both is ignored; absent from one side counts as a difference. Tuples equal lists.
    """
    keys = tuple(expected) if keys is None else tuple(keys)
    differences = {}
    for key in keys:
        found, wanted = meta.get(key, _MISSING), expected.get(key, _MISSING)
        if found is _MISSING and wanted is _MISSING:
            continue
        if _normalized(found) != _normalized(wanted):
            differences[key] = (found, wanted)
    if differences:
        parts = "; ".join(
            f"{k}: checkpoint has {_show(f)}, config has {_show(w)}" for k, (f, w) in differences.items()
        )
        prefix = f"checkpoint {where}" if where is not None else "checkpoint"
        raise CheckpointMismatch(f"{prefix} does not match the configuration: {parts}", differences)


def _normalized(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normalized(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _normalized(v) for k, v in value.items()}
    return value


def _show(value: Any) -> str:
    return "no value" if value is _MISSING else repr(value)

