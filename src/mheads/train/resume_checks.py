"""What a resumed run checks of its data against what its folder recorded, so that it continues exactly as it
trained, and is never refused for a record that an older mheads wrote.

* ``data.normalize``: a run on inputs read as tensors (:mod:`mheads.data.tensors`) started before null was
  the default recorded ``mean_image`` (or ``per_channel``), which never applied there (no
  ``normalizer.safetensors``): it trained on its inputs as stored, and resumes so
  (:func:`trained_unnormalized`); a new run that asks for either is still refused
  (:func:`mheads.data.tensors.refuse_normalize`).
"""

from __future__ import annotations

from pathlib import Path

from mheads.config import ConfigError, read_yaml

__all__ = ["recorded_normalize", "trained_unnormalized"]

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
