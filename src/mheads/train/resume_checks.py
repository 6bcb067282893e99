"""What a resumed run checks of its data against what its folder recorded, so that it continues on the data
it trained on, exactly as it trained: never silently on other data, and never refused for a record that an
older mheads wrote.

* ``data.normalize``: a run on inputs read as tensors (:mod:`mheads.data.tensors`) started before null was
  the default recorded ``mean_image`` (or ``per_channel``), which never applied there (no
  ``normalizer.safetensors``): it trained on its inputs as stored, and resumes so
  (:func:`trained_unnormalized`); a new run that asks for either is still refused
  (:func:`mheads.data.tensor_data.refuse_normalize`).
* The input description (dtype and shape of each input, :func:`mheads.data.tensors.input_spec`) a checkpoint
  recorded must be the resumed data's: uint8 reaches the model as [0, 1] floats, int64 as stored, so a change
  of dtype is a change of what the model sees (:func:`check_same_inputs`). A checkpoint that recorded none
  (images read by the image loaders, older runs) resumes as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mheads.config import ConfigError, read_yaml
from mheads.runs.checkpoint import CheckpointMismatch

__all__ = ["check_same_inputs", "describe_input", "recorded_normalize", "trained_unnormalized"]

STATISTICS = ("mean_image", "per_channel")  # the data.normalize modes fitted on the training set


def trained_unnormalized(given: str | None, recorded: str | None, normalizer_saved: bool) -> bool:
    """Whether a resumed run's ``data.normalize`` ``given``, on inputs read as tensors, is the record of a run
    that trained on them as stored: ``mean_image`` or ``per_channel``, what its folder's config.yaml recorded
    (``recorded``), and no normalizer saved there (``normalizer_saved``: the mode never applied). Such a run
    resumes as null; any other mean_image or per_channel there is refused as for a new run."""
    return given in STATISTICS and given == recorded and not normalizer_saved


def recorded_normalize(out: Path) -> str | None:
    """The ``data.normalize`` of the run folder ``out``'s config.yaml; None where it names none or cannot be
    read (a folder without one, a file that is not YAML: nothing then excuses a refused mode)."""
    try:
        data = read_yaml(Path(out) / "config.yaml").get("data")
    except (ConfigError, OSError):
        return None
    mode = data.get("normalize") if isinstance(data, dict) else None
    return mode if isinstance(mode, str) else None


def describe_input(spec: Any) -> str:
    """A recorded input description (:func:`mheads.data.tensors.input_spec`) in words: ``int64 (12,)``,
    ``uint8 pixels (1, 6, 6)``, ``a dict of 'ids', 'mask'``; ``images read by the image loaders`` for None."""
    if spec is None:
        return "images read by the image loaders"
    if not isinstance(spec, Mapping):
        return f"an unreadable description {str(spec)[:60]!r}"
    if "dict" in spec:
        entries = spec["dict"] if isinstance(spec["dict"], Mapping) else {}
        return "a dict of " + ", ".join(repr(str(k)) for k in entries)
    shape = spec.get("shape")
    sizes = ", ".join(str(n) for n in shape) + "," * (len(shape) == 1) if isinstance(shape, list) else "?"
    dtype = spec.get("dtype")
    return f"{dtype}{' pixels' if dtype == 'uint8' else ''} ({sizes})"


def _entries(spec: Any) -> Mapping | None:
    """A dict input's entries (their descriptions by key); None for an input alone."""
    entries = spec.get("dict") if isinstance(spec, Mapping) else None
    return entries if isinstance(entries, Mapping) else None


def _dtype(spec: Any) -> Any:
    return spec.get("dtype") if isinstance(spec, Mapping) else None


def _difference(recorded: Any, now: Any, name: str = "input") -> tuple[str, Any, Any] | None:
    """``(name, recorded, now)`` of the first input whose description changed (a dict's entry by its key,
    where both are dicts of the same keys), or None where none did."""
    if recorded == now:
        return None
    was, got = _entries(recorded), _entries(now)
    if was is not None and got is not None and set(was) == set(got):
        changed = (_difference(was[k], got[k], f"input {str(k)!r}") for k in was)
        return next((c for c in changed if c is not None), None)
    return name, recorded, now


def check_same_inputs(recorded: Mapping[str, Any], meta: Mapping[str, Any], where: Any) -> None:
    """Refuse, in one line naming the input, the recorded and the new description and what to do, a resume
    whose data's input description (``meta["input"]``, None for images read by the image loaders) differs
    from what the checkpoint recorded (``recorded["input"]``); a checkpoint that recorded none passes."""
    if "input" not in recorded:
        return
    found = _difference(recorded["input"], meta.get("input"))
    if found is None:
        return
    name, was, now = found
    scaled = "uint8" in (_dtype(was), _dtype(now))
    raise CheckpointMismatch(
        f"checkpoint {where}: {name}: the run trained on {describe_input(was)}, the data now gives "
        f"{describe_input(now)}"
        + ("; uint8 reaches the model as [0, 1] floats, other dtypes as stored" if scaled else "")
        + f"; resume on inputs as recorded ({describe_input(was)}; convert them where only the dtype "
        "changed), or train a new run in another folder",
        {"input": (recorded["input"], meta.get("input"))},
    )
