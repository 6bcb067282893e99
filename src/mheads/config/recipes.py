"""Recipe files: a ``base`` config plus named ``runs`` that override it (used by the demo and experiments)."""

from __future__ import annotations

import copy
import importlib.resources
import re
from pathlib import Path

from mheads.config import Config, ConfigError, apply_overrides, config_from_dict, read_yaml

# The recipes ship inside the package (experiments/ in the source tree is the package mheads.experiments), so
# an installed wheel finds them as an editable install does. Installed packages are folders on disk, never
# zipped.
EXPERIMENTS = Path(str(importlib.resources.files("mheads.experiments")))


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = (deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict)
                  else copy.deepcopy(v))
    return out


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "run"


def find_recipe(name_or_path: str | None, default: str) -> Path:
    """A recipe path: as given, or the packaged recipe ``default`` (``mheads.experiments``)."""
    path = Path(name_or_path) if name_or_path else EXPERIMENTS / default
    if not path.exists():
        raise ConfigError(f"{path}: recipe not found")
    return path


def load_recipe(path: Path, overrides: list[str] = ()) -> dict[str, Config]:
    """Named, validated configs from a recipe file; every run gets the same ``--set`` overrides."""
    doc = read_yaml(path)
    unknown = set(doc) - {"base", "runs"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}; "
                          "a recipe has 'base' and 'runs'")
    runs = doc.get("runs") or {}
    if not isinstance(runs, dict) or not runs:
        raise ConfigError(f"{path}: 'runs' must map run names to config overrides")
    out = {}
    for name, over in runs.items():
        data = apply_overrides(deep_merge(doc.get("base") or {}, over or {}), list(overrides))
        data["name"] = str(name)
        try:
            out[str(name)] = config_from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{path} (run {name!r}): {err}") from None
    return out
