"""The trained ensemble a run folder holds: its model description (``run.json``'s ``meta``), its weights (the
final ``model.safetensors`` or an unfinished run's newest committed checkpoint) and the TreeNet they build
(:func:`load_run`). ``mheads.fit`` returns it; evaluation and prediction (:mod:`mheads.infer`) reopen runs
with it."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from mheads.config import ConfigError
from mheads.runs.checkpoint import CheckpointError, check_compatible, load_checkpoint
from mheads.runs.checkpoint_load import check_finite
from mheads.runs.entries import read_run_json
from mheads.train.build import tree_from_meta
from mheads.train.reopen import ModelSpec
from mheads.tree.treenet import TreeNet

__all__ = ["check_parameters_finite", "load_run", "load_run_weights", "load_weights_checked", "run_meta"]


def run_meta(run: Path) -> dict:
    """``run.json``'s model description, read bounded after the folder's entries are checked (no link,
    FIFO or device: :func:`~mheads.runs.entries.check_run_entries`)."""
    info = read_run_json(run)
    if "meta" not in info:
        raise ConfigError(
            f"{run / 'run.json'}: unreadable run description (no 'meta'); expected the UTF-8 JSON object "
            "`mheads train` writes"
        )
    return info["meta"]


def load_run_weights(run: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The final weights (``model.safetensors``) or, for an unfinished run, its newest committed
    checkpoint."""
    final = run / "model.safetensors"
    meta = run_meta(run)
    if final.exists():
        if final.stat().st_size == 0:
            raise CheckpointError(f"{final}: zero-byte weights file")
        try:
            weights = load_file(str(final))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(
                f"{final}: unreadable or truncated weights ({str(err).splitlines()[0]})"
            ) from None
        check_finite(weights, final, allow_inf=True)  # never saved so: an edited or damaged file (a buffer
        # may hold -inf: infinite parameters are refused by load_weights_checked, which knows the model)
        return weights, meta
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
    (another run's, or edited) raise ``CheckpointError`` naming the run instead of torch's traceback; so do
    integer weights where the model has floats (or the reverse), which loading would silently convert."""
    check_parameters_finite(tree, weights, f"--run {run}")
    expected = tree.state_dict()
    for name, t in weights.items():
        if name in expected and t.is_floating_point() != expected[name].is_floating_point():
            raise CheckpointError(
                f"--run {run}: its weights do not fit the model its run.json describes ({name}: got "
                f"dtype {t.dtype}; expected {expected[name].dtype})"
            )
    try:
        tree.load_state_dict(weights)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise CheckpointError(
            f"--run {run}: its weights do not fit the model its run.json describes "
            f"({'; '.join(lines[1:3])[:300]})"
        ) from None


def check_parameters_finite(tree, weights: dict, where: object) -> None:
    """Raise ``CheckpointError`` naming ``where`` and the tensor when a weight the ``tree`` holds as a
    parameter is NaN or infinite (never saved so: an edited or damaged file). Buffers are not checked for
    infinities: a model's own may hold -inf (an attention mask); NaN ones are refused on reading the file."""
    params = {name for name, _ in tree.named_parameters(remove_duplicate=False)}
    check_finite({k: v for k, v in weights.items() if k in params}, str(where))
