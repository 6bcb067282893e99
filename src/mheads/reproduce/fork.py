"""Share a cross-entropy pretraining phase between sweep cells (Table 5: P iterations of cross-entropy, then
MCL).

A run with ``loss.pretrain_iterations = P`` trains exactly like an independent cross-entropy ensemble for its
first P iterations: the same batches, dropout and learning rates; its loss's own fields (k, mix, beta) act
only from iteration P on. So a cell that differs from another run only in its loss can continue from that
run's checkpoint at iteration P instead of training those iterations again. The sweep runs the cell with the
longest cross-entropy prefix first and keeps its checkpoints at the other cells' P (``train.keep_steps``,
``plan_keep_steps``); each other cell is then a *fork*: a new run folder holding a copy of that checkpoint,
the donor's evaluation records up to P and its own config, which resumes like any interrupted run and ends
with the weights an uninterrupted run would have.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from mheads.config import config_from_dict, read_yaml
from mheads.core.atomic import fsync_dir, write_durable
from mheads.data.loader import uses_tensors
from mheads.reproduce.reuse import result_key
from mheads.runs.checkpoint import list_checkpoints, load_checkpoint
from mheads.runs.entries import read_run_json
from mheads.runs.folder import truncate_jsonl, write_run_info

__all__ = ["ce_prefix", "find_fork_donor", "fork_run", "plan_keep_steps", "prefix_key"]

FORK_INFO = "forked_from"  # the run.json entry naming the donor run and iteration


def ce_prefix(cfg) -> int:
    """How many iterations ``cfg`` trains with independent cross-entropy from its start."""
    if cfg.loss.name == "independent_ce":
        return cfg.train.iterations
    return min(cfg.loss.pretrain_iterations, cfg.train.iterations)


def prefix_key(cfg_dict: dict, tensors: bool = False) -> dict:
    """What determines a run's cross-entropy prefix: its result key (``tensors``: as there) without the
    loss."""
    key = result_key(cfg_dict, tensors)
    key.pop("loss", None)
    return key


def _fork_point(cfg) -> int:
    """The iteration a cell could continue from another run at (0: none)."""
    p = cfg.loss.pretrain_iterations
    return p if cfg.loss.name != "independent_ce" and 0 < p < cfg.train.iterations else 0


def plan_keep_steps(cfgs: list) -> list[list[int]]:
    """For each config, the iterations to keep checkpoints of: the fork points of the other configs that share
    its cross-entropy prefix up to there."""
    keys = [prefix_key(c.to_dict(), uses_tensors(c)) for c in cfgs]
    plans = []
    for i, cfg in enumerate(cfgs):
        steps = {_fork_point(other) for j, other in enumerate(cfgs) if j != i and keys[j] == keys[i]}
        plans.append(sorted(s for s in steps if 0 < s <= ce_prefix(cfg) and s < cfg.train.iterations))
    return plans


def find_fork_donor(cfg, seed: int, root: Path, run: Path) -> tuple[Path, Path] | None:
    """A run under ``root/*/seed-<seed>/`` whose cross-entropy prefix covers ``cfg``'s pretraining and that
    kept a checkpoint at its end: (donor run folder, checkpoint folder), or None."""
    step = _fork_point(cfg)
    if not step:
        return None
    want = prefix_key(cfg.to_dict(), uses_tensors(cfg))
    seen = {run.resolve()}
    for config in sorted(root.glob(f"*/seed-{seed}/*/config.yaml")):
        other = config.parent.resolve()
        if other in seen:
            continue
        seen.add(other)
        try:
            ocfg = config_from_dict(read_yaml(config))
            if ce_prefix(ocfg) < step or prefix_key(ocfg.to_dict(), uses_tensors(ocfg)) != want:
                continue
            found = [ck for ck in list_checkpoints(other) if ck.name == f"step-{step:08d}"]
        except Exception:  # an unreadable neighbour is simply not a donor
            continue
        if found:
            return other, found[0]
    return None


def fork_run(cfg, run: Path, donor: Path, checkpoint: Path) -> None:
    """Create the run folder ``run`` for ``cfg`` continuing from ``donor``'s ``checkpoint``; resume it with
    ``fit(cfg, run, resume=True)``. The folder appears whole or not at all."""
    run.parent.mkdir(parents=True, exist_ok=True)
    for stale in run.parent.glob(f".fork-{run.name}-*"):  # left by a fork that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = run.parent / f".fork-{run.name}-{secrets.token_hex(4)}"
    try:
        target = tmp / "checkpoints" / checkpoint.name
        target.mkdir(parents=True)
        for f in sorted(checkpoint.iterdir()):
            write_durable(target / f.name, f.read_bytes())
        fsync_dir(target)
        step = load_checkpoint(target).state["step"]  # the copy reads back, checksums verified
        info = read_run_json(donor)
        extra = {k: info[k] for k in ("meta", "param_counts", "data") if k in info}
        write_run_info(tmp, cfg.to_yaml(), {**extra, FORK_INFO: {"run": str(donor), "iteration": step}})
        if (donor / "eval.jsonl").exists():
            write_durable(tmp / "eval.jsonl", (donor / "eval.jsonl").read_bytes())
            truncate_jsonl(tmp / "eval.jsonl", step)  # the donor's records up to the fork point
        fsync_dir(tmp)
        tmp.rename(run)
        fsync_dir(run.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def forked_from(run: Path) -> dict | None:
    """``{"run", "iteration"}`` for a forked run folder, else None (no run.json yet: not a fork); a run.json
    that is a link, a FIFO or not a JSON object is refused (``read_run_json``), not taken for a fresh run."""
    if not os.path.lexists(run / "run.json"):  # a dangling link is refused below
        return None
    return read_run_json(run).get(FORK_INFO)
