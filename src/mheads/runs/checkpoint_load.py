"""Loading and validating checkpoints: the commit marker and every checksum are verified before anything is
parsed, and a checkpoint's meta is compared with the configuration (`check_compatible`).

Nothing here runs code from a file: weights are read with safetensors and state with
`torch.load(weights_only=True)`. Only an incomplete or damaged checkpoint is skipped for an older one; one
whose verified content is refused raises. Saving, listing and pruning are in `mheads.runs.checkpoint`, which
also re-exports this module's public names.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from mheads.runs.checkpoint_format import (
    _STEP_DIR,
    CHECKPOINTS_DIR,
    COMMIT_FILE,
    DATA_FILES,
    DEFAULT_COMPAT_KEYS,
    META_FILE,
    STATE_FILE,
    SUPPORTED_SCHEMA_VERSIONS,
    WEIGHTS_FILE,
    Checkpoint,
    CheckpointError,
    CheckpointMismatch,
    _describe,
    _io_reason,
    _one_line,
    _step_dirs,
)

__all__ = ["check_compatible", "check_finite", "load_checkpoint", "load_latest"]

log = logging.getLogger(__name__)

_MISSING = object()


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
    # the checksums are the writer's: a folder may be edited; a buffer may hold -inf (an attention mask), so
    # infinite parameters are refused where the model is known (train.run_model.check_parameters_finite)
    check_finite(weights, folder / WEIGHTS_FILE, allow_inf=True)
    check_finite(state, folder / STATE_FILE)  # e.g. optimizer momentum, which would turn the weights NaN
    return Checkpoint(step=doc["step"], weights=weights, state=state, meta=doc["meta"], path=folder)


def _safe_torch_load(data: bytes, path: Path) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():  # torch warns of a foreign pickle protocol before it refuses one
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        refused = isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in text
        if refused or "WeightsUnpickler error" in text or "Unsupported" in text:
            raise CheckpointError(
                f"{path} was refused by the safe loader: it holds more than plain tensors and numbers "
                f"({_unpickler_reason(text)}); mheads never loads such files"
            ) from exc
        raise CheckpointError(f"{path} cannot be read as torch.save data: {_one_line(exc)}") from exc
    if type(state) not in (dict, OrderedDict):
        raise CheckpointError(f"{path} holds {_describe(state)}, expected a dict")
    return state


def check_finite(tensors: Any, path: Path | str, allow_inf: bool = False) -> None:
    """Raise CheckpointError naming ``path`` and the entry when a floating-point tensor in ``tensors`` (a
    dict of weights, or state nested in dicts, lists and tuples) holds NaN or (unless ``allow_inf``: weights
    whose buffers may hold a -inf mask) an infinity; such parameters and optimizer state are never saved (a
    non-finite step stops or is skipped), so they come from an edited or damaged file."""
    for name, t in _tensors(tensors, ""):
        bad = t.isnan().any() if allow_inf else ~torch.isfinite(t).all()
        if t.is_floating_point() and bool(bad):
            raise CheckpointError(
                f"{path}: {name or 'tensor'}: got non-finite values (NaN or inf); expected finite numbers "
                "(an edited or damaged file)"
            )


def _tensors(obj: Any, where: str) -> Iterable[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield where, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _tensors(value, f"{where}[{key!r}]" if where else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{where}[{i}]")


def _unpickler_reason(text: str) -> str:
    # torch's message is several lines and suggests weights_only=False; keep only the cause.
    tail = text.split("WeightsUnpickler error:", 1)[-1]
    tail = tail.split("trusted source.", 1)[-1]  # its preamble: the unsafe re-run it suggests
    for stop in ("Please use", "Check the documentation"):
        tail = tail.split(stop, 1)[0]
    return " ".join(tail.split()) or "unsupported content"


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
            if path.is_symlink():  # a handed-over folder's link would have a file elsewhere read as this one
                raise CheckpointError(f"{path} is a symbolic link; a checkpoint's files must be its own")
            if not path.is_file():
                raise CheckpointError(f"{path} is missing")
            if path.stat().st_size != want["bytes"]:  # before reading: the file may be anything large
                size, wanted = path.stat().st_size, want["bytes"]
                what = "is empty" if not size else "is truncated" if size < wanted else "is too long"
                raise CheckpointError(f"{path} {what}: {size} bytes, the commit marker says {wanted}")
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
