"""A run resumed with other settings records them (``config_history.jsonl``), so that its folder never
describes a run that did not happen."""

from __future__ import annotations

import logging
from pathlib import Path

from mheads.config import Config
from mheads.config.data_config import effective_normalize
from mheads.core.atomic import atomic_write_text
from mheads.runs.folder import NORMALIZER_FILE, append_jsonl

__all__ = ["changed_settings", "record_changes"]

log = logging.getLogger("mheads")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "options" and k != "placement":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed_settings(before: dict, now: dict, tensors: bool, *, as_stored: bool = False) -> dict[str, list]:
    """The fields of the config dict ``now`` that differ from ``before`` (a run folder's config.yaml), each
    as ``[old, new]`` with dotted names (``model.options`` and ``dist.placement`` whole); a field ``before``
    lacks is not a change. ``data.normalize`` compares by the normalization it gives
    (:func:`effective_normalize`, ``tensors``: the data is read as tensors): null and ``mean_image`` are the
    same for images, null and ``none`` for tensors. ``as_stored`` (inputs read as tensors and no normalizer
    saved: every mode a folder recorded before null was the default gave them as stored): never a change."""
    old, new = _flat(before), _flat(now)
    return {
        k: [old[k], v]
        for k, v in new.items()
        if k in old
        and old[k] != v
        and not (k == "data.normalize" and (as_stored or _same_normalize(old[k], v, tensors)))
    }


def _same_normalize(a, b, tensors: bool) -> bool:
    return effective_normalize(a, tensors) == effective_normalize(b, tensors)


def record_changes(out: Path, cfg: Config, step: int, *, tensors: bool) -> None:
    """A run resumed with other settings (``--set``, or an edited ``config.yaml``) records them
    (:func:`changed_settings`; ``tensors``: the run's data is read as tensors): every changed field with its
    old and new value and the iteration from which the new one applies, appended to ``config_history.jsonl``,
    and ``config.yaml`` rewritten to the settings the run now trains with; so the folder never describes a run
    that did not happen."""
    import yaml

    try:
        before = yaml.safe_load((out / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        before = {}
    # tensor inputs with no normalizer saved: no mode ever applied (restore refuses one asked anew)
    as_stored = tensors and not (out / NORMALIZER_FILE).exists()
    before = before if isinstance(before, dict) else {}
    changes = changed_settings(before, cfg.to_dict(), tensors, as_stored=as_stored)
    if not changes:
        return
    append_jsonl(out / "config_history.jsonl", {"step": step, "changes": changes})
    atomic_write_text(out / "config.yaml", cfg.to_yaml())
    said = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items())
    log.warning(
        "resumed at iteration %d with changed settings (recorded in %s): %s",
        step,
        out / "config_history.jsonl",
        said,
    )
