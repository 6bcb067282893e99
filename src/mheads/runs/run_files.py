"""The small files beside a run's weights that ``mheads eval`` and ``mheads predict`` apply to every input:
``calibration.json`` (temperature scaling and the OOD flag's threshold) and ``normalizer.safetensors``.

A run folder is data someone may hand over or edit, and both files change every prediction silently (a
temperature of -1 flips them), so every field is checked before use: a temperature is a finite number > 0,
there is one member temperature per member, the normalizer's arrays have the shapes its mode gives for the
run's images and finite values, and sizes are bounded before anything is read. A bad file raises
``CheckpointError`` naming the file, the field, the value and what is allowed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from mheads.runs.checkpoint_format import CheckpointError
from mheads.runs.folder import CALIBRATION_FILE, NORMALIZER_FILE

__all__ = ["load_calibration", "load_normalizer", "MAX_CALIBRATION_BYTES"]

MAX_CALIBRATION_BYTES = 1 << 20  # a real calibration.json is a few hundred bytes
MAX_NORMALIZER_BYTES = 1 << 30  # a mean image of 3 x 1024 x 1024 float32 is 12 MiB
UNCALIBRATED = "delete it to use the run uncalibrated"


def _positive(path: Path, field: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise CheckpointError(
            f"{path}: {field}: got {value!r}; expected a finite number > 0 ({UNCALIBRATED})"
        )
    return float(value)


def _read_json(path: Path, limit: int):
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise CheckpointError(f"{path}: unreadable ({err.strerror or err})") from None
    if len(data) > limit:
        raise CheckpointError(
            f"{path}: larger than {limit} bytes; expected a small JSON object ({UNCALIBRATED})"
        )
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{path}: not UTF-8 JSON ({type(err).__name__}: {str(err)[:80]}); {UNCALIBRATED}"
        ) from None


def _ood_threshold(path: Path, value) -> dict:
    from mheads.ensemble.uncertainty import CRITERIA

    field = "ood_threshold"
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: {field}: got {type(value).__name__}; expected an object")
    criterion, threshold, tpr = value.get("criterion"), value.get("threshold"), value.get("tpr")
    if criterion not in CRITERIA:
        raise CheckpointError(
            f"{path}: {field}.criterion: got {criterion!r}; expected one of {', '.join(CRITERIA)}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise CheckpointError(f"{path}: {field}.threshold: got {threshold!r}; expected a finite number")
    if isinstance(tpr, bool) or not isinstance(tpr, (int, float)) or not 0 < tpr <= 1:
        raise CheckpointError(f"{path}: {field}.tpr: got {tpr!r}; expected a number in (0, 1]")
    return {**value, "threshold": float(threshold), "tpr": float(tpr)}


def load_calibration(out: str | Path, members: int) -> dict | None:
    """The run's ``calibration.json`` checked for an ensemble of ``members`` members, or None when the run
    has none (trained without a held-out split). ``temperature``: the ensemble's; ``member_temperatures``:
    one per member; ``ood_threshold`` (optional; older runs lack it): {criterion, threshold, tpr}."""
    path = Path(out) / CALIBRATION_FILE
    if not path.exists():
        return None
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file; expected the run's calibration JSON")
    cal = _read_json(path, MAX_CALIBRATION_BYTES)
    if not isinstance(cal, dict):
        raise CheckpointError(
            f"{path}: got a JSON {type(cal).__name__}; expected an object with "
            f"temperature and member_temperatures ({UNCALIBRATED})"
        )
    for key in ("temperature", "member_temperatures"):
        if key not in cal:
            raise CheckpointError(f"{path}: {key}: missing; expected it beside the others ({UNCALIBRATED})")
    checked = dict(cal, temperature=_positive(path, "temperature", cal["temperature"]))
    per = cal["member_temperatures"]
    if not isinstance(per, list) or len(per) != members:
        got = f"{len(per)} values" if isinstance(per, list) else type(per).__name__
        raise CheckpointError(
            f"{path}: member_temperatures: got {got}; expected a list of {members} (one "
            f"per member of the run) ({UNCALIBRATED})"
        )
    checked["member_temperatures"] = [
        _positive(path, f"member_temperatures[{i}]", t) for i, t in enumerate(per)
    ]
    if "ood_threshold" in cal:
        checked["ood_threshold"] = _ood_threshold(path, cal["ood_threshold"])
    return checked


def _normalizer_shapes(mode: str, channels: int, size: int) -> dict[str, tuple[int, ...]]:
    """The shapes of shift and scale a normalizer of ``mode`` has for ``channels`` x ``size`` x ``size``
    images (see :class:`mheads.data.preprocess.Normalizer`)."""
    shapes: dict[str, dict[str, tuple[int, ...]]] = {
        "mean_image": {"shift": (channels, size, size), "scale": ()},
        "per_channel": {"shift": (channels, 1, 1), "scale": (channels, 1, 1)},
        "none": {"shift": (), "scale": ()},
    }
    return shapes[mode]


def load_normalizer(out: str | Path, in_channels: int, image_size: int):
    """The run's saved input normalization for ``in_channels`` x ``image_size`` x ``image_size`` images, or
    None for a run from before it was saved (the caller refits it on the run's data). Shapes are checked from
    the file's header before any tensor is read; values must be finite, the scale > 0."""
    from safetensors import SafetensorError, safe_open

    from mheads.data.preprocess import NORMALIZE_MODES, Normalizer

    path = Path(out) / NORMALIZER_FILE
    if not path.exists():
        return None
    again = "delete it to refit the normalizer on the run's training data"
    if not path.is_file() or path.stat().st_size > MAX_NORMALIZER_BYTES:
        raise CheckpointError(f"{path}: not a regular file of at most {MAX_NORMALIZER_BYTES} bytes; {again}")
    try:
        with safe_open(str(path), framework="pt") as f:
            mode = (f.metadata() or {}).get("mode")
            if mode not in NORMALIZE_MODES:
                raise CheckpointError(
                    f"{path}: mode: got {mode!r}; expected one of {', '.join(NORMALIZE_MODES)} ({again})"
                )
            tensors = {}
            for name, shape in _normalizer_shapes(mode, in_channels, image_size).items():
                if name not in f.keys():
                    raise CheckpointError(
                        f"{path}: {name}: missing; expected a tensor of shape {shape} ({again})"
                    )
                got = tuple(f.get_slice(name).get_shape())
                if got != shape:
                    raise CheckpointError(
                        f"{path}: {name}: got shape {got}; expected {shape} for {mode} on "
                        f"the run's {in_channels}x{image_size}x{image_size} images "
                        f"({again})"
                    )
                tensors[name] = f.get_tensor(name)
    except (SafetensorError, OSError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{path}: unreadable ({str(err).splitlines()[0][:120]}); {again}") from None
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise CheckpointError(f"{path}: {name}: got dtype {t.dtype}; expected floats ({again})")
        if not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: {name}: got non-finite values; expected finite floats ({again})")
    if not bool((tensors["scale"] > 0).all()):
        raise CheckpointError(
            f"{path}: scale: got values <= 0 (min {float(tensors['scale'].min())}); expected > 0 ({again})"
        )
    return Normalizer.from_dict({"mode": mode, **tensors})
