"""Reuse of identical runs: a sweep cell whose config computes exactly what a finished run beside it computed.

Runs are deterministic given their config, so only the fields that change what a run computes are compared
(``result_key``); the run's name and its bookkeeping (how often it saves and evaluates in bulk, denormal
flushing) are not, and ``data.normalize`` compares by the normalization it gives (null is ``mean_image`` for
images: the runs of every sweep from before null was the default say ``mean_image``).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from mheads.config import config_from_dict, read_yaml
from mheads.config.data_config import effective_normalize
from mheads.data.loader import uses_tensors

__all__ = ["BOOKKEEPING", "find_equivalent_run", "result_key"]


# Config fields that do not change what a run computes: its label, how often it saves, and flushing denormals
# (a speed setting: it changes only values below 1.2e-38, so runs from before it existed still match), and
# when the host reads the loss (the updates are the same either way).
BOOKKEEPING = (
    ("name",),
    ("train", "checkpoint_every"),
    ("train", "keep_checkpoints"),
    ("train", "keep_steps"),
    ("train", "eval_batch_size"),
    ("train", "flush_denormal"),
    ("train", "log_every"),
    ("train", "sync"),
)


def result_key(cfg_dict: dict, tensors: bool = False) -> dict:
    """The part of a config that determines a run's results. A data source that exists on disk is compared
    by its resolved path, so ``../shared/data/x`` and ``/work/shared/data/x`` name the same data;
    ``data.normalize`` by the normalization it gives (:func:`effective_normalize`; ``tensors``: the config's
    data is read as tensors, :func:`mheads.data.loader.uses_tensors`), so null and ``mean_image`` name the
    same image run."""
    key = copy.deepcopy(cfg_dict)
    for path in BOOKKEEPING:
        node = key
        for part in path[:-1]:
            node = node.get(part, {})
        node.pop(path[-1], None)
    source = key.get("data", {}).get("source")
    if isinstance(source, str) and source and os.path.exists(source):
        key["data"]["source"] = str(Path(source).resolve())
    if "normalize" in key.get("data", {}):
        key["data"]["normalize"] = effective_normalize(key["data"]["normalize"], tensors)
    return key


def find_equivalent_run(cfg, seed: int, root: Path, run: Path) -> Path | None:
    """A finished, non-reused run under ``root/*/seed-<seed>/`` whose config computes the same thing as
    ``cfg``."""
    want = result_key(cfg.to_dict(), uses_tensors(cfg))
    for metrics in sorted(root.glob(f"*/seed-{seed}/*/metrics.json")):
        other = metrics.parent
        if other.is_symlink() or other.resolve() == run.resolve() or not (other / "config.yaml").exists():
            continue
        try:
            # through the dataclasses: a run written before a field existed has that field's default
            ocfg = config_from_dict(read_yaml(other / "config.yaml"))
            if result_key(ocfg.to_dict(), uses_tensors(ocfg)) == want:
                return other
        except Exception:  # an unreadable neighbour is simply not a match
            continue
    return None
