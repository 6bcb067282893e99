"""A run resumed with other settings records them (``config_history.jsonl``), so that its folder never
describes a run that did not happen."""

from __future__ import annotations

import logging
from pathlib import Path

from mheads.config import Config
from mheads.core.atomic import atomic_write_text
from mheads.runs.folder import append_jsonl

__all__ = ["record_changes"]

log = logging.getLogger("mheads")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "options" and k != "placement":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def record_changes(out: Path, cfg: Config, step: int) -> None:
    """A run resumed with other settings (``--set``, or an edited ``config.yaml``) records them: every changed
    field with its old and new value and the iteration from which the new one applies, appended to
    ``config_history.jsonl``, and ``config.yaml`` rewritten to the settings the run now trains with; so the
    folder never describes a run that did not happen."""
    import yaml

    try:
        before = _flat(yaml.safe_load((out / "config.yaml").read_text()) or {})
    except (OSError, yaml.YAMLError):
        before = {}
    now = _flat(cfg.to_dict())
    changes = {k: [before.get(k), v] for k, v in now.items() if k in before and before[k] != v}
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
