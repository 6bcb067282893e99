"""Experiment specifications, the one recipe format: one YAML per paper table under ``experiments/``, and the
demo (``experiments/demo.yaml``).

A spec has a ``title``, a ``base`` config, ``metrics`` (the columns), optional ``scales`` overrides per scale,
and ``cells``: each with a ``row`` label (and optional ``col`` for pivoted tables), a ``config`` override,
optional per-scale overrides, the ``paper`` numbers for that cell, and optional ``init_from_cell`` (fine-tune
from another cell's finished run of the same seed). Scale defaults live in ``experiments/scales.yaml``; a spec
loaded without a scale (the demo) is its own ``base`` and cells only.
"""

from __future__ import annotations

import copy
import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mheads.config import Config, ConfigError, apply_overrides, config_from_dict, read_yaml

# The specs ship inside the package (experiments/ in the source tree is the package mheads.experiments), so
# an installed wheel finds them as an editable install does. Installed packages are folders on disk, never
# zipped.
EXPERIMENTS = Path(str(importlib.resources.files("mheads.experiments")))
SCALES = ("smoke", "cpu", "paper")
SPEC_KEYS = {
    "title",
    "layout",
    "base",
    "metrics",
    "scales",
    "cells",
    "note",
    "figures",
    "random_label_trials",
}
CELL_KEYS = {"row", "col", "config", "scales", "paper", "init_from_cell", "label_split"}


@dataclass
class Cell:
    name: str
    row: str
    col: str | None
    config: Config
    paper: dict = field(default_factory=dict)
    init_from_cell: str | None = None
    label_split: dict | None = None  # {random: seed} or {clusters_of: cell}: resolved by the sweep


@dataclass
class Spec:
    name: str
    title: str
    metrics: list[str]
    cells: list[Cell]
    figures: list[str]
    note: str = ""


def deep_merge(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in, section by section (nested dicts merge; anything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = (
            deep_merge(out[k], v)
            if isinstance(v, dict) and isinstance(out.get(k), dict)
            else copy.deepcopy(v)
        )
    return out


def is_spec_path(name: str) -> bool:
    """A spec named by its file (``my/demo.yaml``) rather than by a packaged experiment's name."""
    return name.endswith((".yaml", ".yml")) or "/" in name


def experiment_path(name: str, root: Path = EXPERIMENTS) -> Path:
    """The spec file of a packaged experiment's name (``table1``, ``label-split``) or of a YAML path."""
    if is_spec_path(name):
        if not Path(name).is_file():
            raise ConfigError(f"{name}: spec file not found")
        return Path(name)
    path = root / f"{name.replace('-', '_')}.yaml"
    if not path.exists():
        available = sorted(
            p.stem.replace("_", "-") for p in root.glob("*.yaml") if "\ncells:" in p.read_text()
        )  # experiment specs, not single-run configs
        raise ConfigError(f"reproduce: unknown experiment {name!r}; available: {', '.join(available)}")
    return path


def _read_spec(path: Path) -> dict:
    doc = read_yaml(path)
    if "runs" in doc:  # the recipe format before issue 33: base + runs
        raise ConfigError(
            f"{path}: 'runs' is the old recipe format; list the runs under 'cells' "
            "(each with a 'row' label and its overrides under 'config')"
        )
    unknown = set(doc) - SPEC_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(SPEC_KEYS))}"
        )
    if not isinstance(doc.get("cells"), dict) or not doc["cells"]:
        raise ConfigError(
            f"{path}: cells: got {doc.get('cells')!r}; expected a mapping of cell names to cells"
        )
    return doc


def _scaled_base(doc: dict, scale: str | None, root: Path) -> dict:
    """The spec's ``base`` over the scale's defaults (``scales.yaml``), under the spec's own overrides for
    that scale; ``base`` alone without a scale."""
    base = doc.get("base") or {}
    if scale is not None:
        base = deep_merge(read_yaml(root / "scales.yaml").get(scale) or {}, base)
        base = deep_merge(base, (doc.get("scales") or {}).get(scale) or {})
    return base


def _cell_docs(doc: dict, scale: str | None) -> dict:
    """The spec's cells by name, then one label-split specialist cell per random split of the scale."""
    cell_docs = dict(doc["cells"])
    trials = (doc.get("random_label_trials") or {}).get(scale, 0) if scale is not None else 0
    for i in range(int(trials)):
        cell_docs[f"random_{i:03d}"] = {"row": f"random split {i}", "label_split": {"random": i}}
    return cell_docs


def _cell_config(
    path: Path, name: str, cname: str, c: dict, base: dict, scale: str | None, data, overrides: Sequence[str]
) -> Config:
    """One cell's validated config: ``base``, the cell's config, its scale's, ``data``, then ``overrides``."""
    data_cfg = deep_merge(base, c.get("config") or {})
    if scale is not None:
        data_cfg = deep_merge(data_cfg, (c.get("scales") or {}).get(scale) or {})
    if data is not None:
        data_cfg = deep_merge(data_cfg, {"data": {"source": str(data)}})
    data_cfg = apply_overrides(data_cfg, list(overrides))
    if c.get("init_from_cell"):  # the real path (this seed's run of that cell) is filled in by the sweep
        data_cfg.setdefault("train", {})["init_from"] = f"@{c['init_from_cell']}"
    data_cfg["name"] = f"{name}/{cname}"
    try:
        return config_from_dict(data_cfg)
    except ConfigError as err:
        raise ConfigError(f"{path} (cell {cname!r}): {err}") from None


def _cell(
    path: Path, name: str, cname, c, base: dict, scale: str | None, data, overrides: Sequence[str]
) -> Cell:
    """The cell ``cname`` of the spec at ``path``, its keys checked and its config validated."""
    c = c or {}
    bad = set(c) - CELL_KEYS
    if bad:
        raise ConfigError(
            f"{path}: cell {cname!r}: unknown key(s) {sorted(bad)}; allowed: {sorted(CELL_KEYS)}"
        )
    cfg = _cell_config(path, name, cname, c, base, scale, data, overrides)
    return Cell(
        str(cname),
        str(c.get("row", cname)),
        c.get("col"),
        cfg,
        dict(c.get("paper") or {}),
        c.get("init_from_cell") or (c.get("label_split") or {}).get("clusters_of"),
        c.get("label_split"),
    )


def load_spec(
    name: str, scale: str | None, data: str | None, overrides: Sequence[str] = (), root: Path = EXPERIMENTS
) -> Spec:
    """The validated cells of the experiment ``name`` (a packaged name or a spec file) at ``scale``.

    ``scale`` None applies no scale preset (the demo); ``data`` sets every cell's ``data.source``;
    ``overrides`` are ``--set`` strings applied to every cell last.
    """
    if scale is not None and scale not in SCALES:
        raise ConfigError(f"--scale: got {scale!r}; expected one of {', '.join(SCALES)}")
    path = experiment_path(name, root)
    if is_spec_path(name):
        name = path.stem.replace("_", "-")
    doc = _read_spec(path)
    base = _scaled_base(doc, scale, root)
    cells = [
        _cell(path, name, cname, c, base, scale, data, overrides)
        for cname, c in _cell_docs(doc, scale).items()
    ]
    names = {c.name for c in cells}
    for c in cells:
        if c.init_from_cell is not None and c.init_from_cell not in names:
            raise ConfigError(f"{path}: cell {c.name!r}: init_from_cell {c.init_from_cell!r} is not a cell")
    return Spec(
        name,
        str(doc.get("title", name)),
        list(doc.get("metrics") or ["ensemble_mean_acc", "oracle_acc"]),
        cells,
        list(doc.get("figures") or []),
        str(doc.get("note", "")),
    )
