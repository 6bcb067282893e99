"""Are two finished runs the same run? (Exact resume, forks and reruns are checked this way.)

:func:`run_differences` compares every weight file bit for bit, ``metrics.json`` without the fields that say
how a run went rather than what it computed (:data:`TIMING_KEYS`), ``eval.jsonl``, ``run.json``'s model
description, parameter counts and data record, and (optionally) ``config.yaml``.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["TIMING_KEYS", "run_differences"]

TIMING_KEYS = (
    "train_time_s",
    "images_per_s",
    "wall_time_s",
    "data_wait_s",
    "resumed_from_iteration",
)  # how a run went, not what


def _read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


def run_differences(ref: str | Path, other: str | Path, same_config: bool = True) -> list[str]:
    """What differs between two finished run folders, one line per difference ([] when they are the same):
    every weight file (``model.safetensors`` and ``members/*``, tensor by tensor with ``torch.equal``),
    ``metrics.json`` (but :data:`TIMING_KEYS`), ``eval.jsonl``, ``run.json``'s ``meta``, ``param_counts``
    and ``data``, and, with ``same_config``, ``config.yaml`` byte for byte."""
    import torch
    from safetensors.torch import load_file

    ref, other = Path(ref), Path(other)
    problems = []
    members = ref / "members"
    names = [
        "model.safetensors",
        *(sorted(p.relative_to(ref).as_posix() for p in members.iterdir()) if members.is_dir() else []),
    ]
    for name in names:
        if not (other / name).is_file():
            problems.append(f"{name}: missing")
            continue
        ta, tb = load_file(str(ref / name)), load_file(str(other / name))
        if ta.keys() != tb.keys():
            problems.append(f"{name}: different tensors {sorted(ta.keys() ^ tb.keys())}")
        problems += [f"{name}: {k} differs" for k in ta if k in tb and not torch.equal(ta[k], tb[k])]
    if same_config and _read(ref / "config.yaml") != _read(other / "config.yaml"):
        problems.append("config.yaml differs")
    info = [json.loads(_read(run / "run.json") or "{}") for run in (ref, other)]
    for key in ("meta", "param_counts", "data"):
        if info[0].get(key) != info[1].get(key):
            problems.append(f"run.json: {key} differs")
    for name in ("metrics.json", "eval.jsonl"):
        if not (other / name).is_file():
            problems.append(f"{name}: missing")
            continue
        a: object
        b: object
        if name == "metrics.json":
            a, b = (
                {k: v for k, v in json.loads((run / name).read_text()).items() if k not in TIMING_KEYS}
                for run in (ref, other)
            )
        else:
            a, b = (
                [json.loads(line) for line in (run / name).read_text().splitlines()] for run in (ref, other)
            )
        if a != b:
            problems.append(f"{name} differs")
    return problems
