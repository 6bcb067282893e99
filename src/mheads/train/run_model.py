"""The trained ensemble a run folder holds: its model description (``run.json``'s ``meta``), its weights (the
final ``model.safetensors`` or an unfinished run's newest committed checkpoint) and the TreeNet they build
(:func:`load_run`). ``mheads.fit`` returns it; evaluation and prediction (:mod:`mheads.infer`) reopen runs
with it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from mheads.config import ConfigError
from mheads.runs.checkpoint import CheckpointError, check_compatible, load_checkpoint
from mheads.train.build import tree_from_meta
from mheads.train.reopen import ModelSpec
from mheads.tree.treenet import TreeNet

__all__ = ["load_run", "load_run_weights", "load_weights_checked", "run_meta"]


def run_meta(run: Path) -> dict:
    info = run / "run.json"
    try:
        return json.loads(info.read_text())["meta"]
    except FileNotFoundError:
        raise ConfigError(
            f"--run {run}: no run.json; is it a run folder written by `mheads train`?"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise ConfigError(
            f"{info}: unreadable run description ({type(err).__name__}: {str(err)[:100]}); "
            "expected the UTF-8 JSON object `mheads train` writes"
        ) from None


def load_run_weights(run: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The final weights (``model.safetensors``) or, for an unfinished run, its newest committed
    checkpoint."""
    final = run / "model.safetensors"
    meta = run_meta(run)
    if final.exists():
        if final.stat().st_size == 0:
            raise CheckpointError(f"{final}: zero-byte weights file")
        try:
            return load_file(str(final)), meta
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(
                f"{final}: unreadable or truncated weights ({str(err).splitlines()[0]})"
            ) from None
    if not (run / "checkpoints").is_dir():
        raise CheckpointError(
            f"--run {run}: no final weights (model.safetensors) and no committed checkpoint"
        )
    ck = load_checkpoint(run)  # the newest committed one; if none is usable the error names what is wrong
    check_compatible(ck.meta, meta, where=ck.path)  # names the keys that differ from run.json's model
    return ck.weights, meta


def load_run(run: str | os.PathLike, model: ModelSpec = None) -> TreeNet:
    """The trained ensemble of a run folder (its final weights, or an unfinished run's newest checkpoint), in
    eval mode on the CPU.

    Args:
        run: a run folder written by ``mheads train`` or ``mheads.fit``.
        model: for a run trained on an import path or on a Python object, the model, named by you: an
            ``nn.Module`` of the same architecture (its weights are replaced by the run's), a zero-argument
            factory, or the import path. A run folder never names code to import or call; a run of a
            registered model needs none.
    """
    run = Path(run)
    if not run.is_dir():
        raise ConfigError(f"run: {run}: not a folder; give a run folder written by `mheads train`")
    weights, meta = load_run_weights(run)
    tree = tree_from_meta(meta, where=str(run / "run.json"), model=model)
    load_weights_checked(tree, weights, run)
    return tree.eval()


def load_weights_checked(tree, weights: dict, run) -> None:
    """Load a run's weights into the tree its run.json describes; weights of another shape or set of names
    (another run's, or edited) raise ``CheckpointError`` naming the run instead of torch's traceback."""
    try:
        tree.load_state_dict(weights)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise CheckpointError(
            f"--run {run}: its weights do not fit the model its run.json describes "
            f"({'; '.join(lines[1:3])[:300]})"
        ) from None
