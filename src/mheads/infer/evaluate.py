"""Evaluation: every ensemble metric on a split during training (:func:`evaluate`), and re-evaluating a
finished (or checkpointed) run's members on its own data or another data set (:func:`evaluate_run`,
``mheads eval``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from mheads.config import Config, ConfigError, load_config
from mheads.core.seeding import Stream, derived_generator
from mheads.data import DataError
from mheads.data.channel_view import CONVERTIBLE, ChannelView
from mheads.data.loader import prepare
from mheads.data.tensors import TensorData
from mheads.ensemble.accumulator import EnsembleMetrics
from mheads.runs.checkpoint import CheckpointError, check_compatible, load_checkpoint
from mheads.runs.run_files import load_normalizer
from mheads.tasks import Classification, Task, TaskMetrics
from mheads.train.build import tree_from_meta
from mheads.train.comm import LocalComm
from mheads.train.device import resolve_device
from mheads.train.reopen import ModelSpec
from mheads.train.task_run import run_task
from mheads.tree.treenet import TreeNet

__all__ = ["evaluate", "evaluate_run", "load_run", "load_run_weights", "load_weights_checked"]


@torch.no_grad()
def task_metrics(model, data, task: Task, batch_size: int, split: str = "test", is_root: bool = True) -> dict:
    """A task's metrics (:class:`~mheads.tasks.TaskMetrics`) on a split, batch by batch."""
    was_training = model.training
    model.eval()
    acc = TaskMetrics(task)
    try:
        for x, y in data.eval_batches(split, batch_size):
            outputs = model(x)  # (M, B, ...) at the root
            if is_root:
                acc.update(outputs.float(), y)
    finally:
        model.train(was_training)
    return {"task": task.name, **acc.compute()} if is_root else {}


@torch.no_grad()
def evaluate(model, data, cfg: Config, comm, split: str = "test", task: Task | None = None) -> dict | None:
    """All ensemble metrics on a split; the dict on the root, None elsewhere. ``task``: any task but
    classification reports its own metrics (:func:`task_metrics`).

    A tree with scoring heads (``model.scoring_heads``) adds ``scored_acc`` (the prediction of the member
    with the highest score) and ``score_weighted_acc`` (the members' probabilities weighted by their sigmoid
    scores, normalized)."""
    from mheads.tree.scoring import scored_predictions

    if task is not None and not isinstance(task, Classification):
        metrics = task_metrics(model, data, task, cfg.train.eval_batch_size, split, comm.is_root)
        return metrics if comm.is_root else None

    was_training = model.training
    model.eval()
    acc = EnsembleMetrics(cfg.model.members, data.num_classes,
                          generator=derived_generator(cfg.train.seed, Stream.ORACLE_TIES))
    scored = getattr(model, "scoring", None) is not None and hasattr(model, "forward_with_scores")
    right, seen = [0, 0], 0  # correct (scored, score-weighted) predictions, examples
    for x, y in data.eval_batches(split, cfg.train.eval_batch_size):
        if scored:
            logits, scores = model.forward_with_scores(x)  # (M, B, C), (M, B)
        else:
            logits = model(x)  # (M, B, C) at the root
        if comm.is_root:
            acc.update(logits.float().cpu(), y.cpu())
            if scored:
                for i, pred in enumerate(scored_predictions(logits.float().cpu(), scores.float().cpu())):
                    right[i] += int((pred == y.cpu()).sum())
                seen += len(y)
    model.train(was_training)
    if not comm.is_root:
        return None
    metrics = acc.compute()
    if scored:
        metrics.update(scored_acc=right[0] / max(seen, 1), score_weighted_acc=right[1] / max(seen, 1))
    return metrics


def _run_meta(run: Path) -> dict:
    info = run / "run.json"
    try:
        return json.loads(info.read_text())["meta"]
    except FileNotFoundError:
        raise ConfigError(f"--run {run}: no run.json; "
                          "is it a run folder written by `mheads train`?") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{info}: unreadable run description ({type(err).__name__}: {str(err)[:100]}); "
                          "expected the UTF-8 JSON object `mheads train` writes") from None


def load_run_weights(run: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The final weights (``model.safetensors``) or, for an unfinished run, its newest committed
    checkpoint."""
    final = run / "model.safetensors"
    meta = _run_meta(run)
    if final.exists():
        if final.stat().st_size == 0:
            raise CheckpointError(f"{final}: zero-byte weights file")
        try:
            return load_file(str(final)), meta
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{final}: unreadable or truncated weights "
                                  f"({str(err).splitlines()[0]})") from None
    if not (run / "checkpoints").is_dir():
        raise CheckpointError(f"--run {run}: no final weights (model.safetensors) "
                              "and no committed checkpoint")
    ck = load_checkpoint(run)  # the newest committed one; if none is usable the error names what is wrong
    check_compatible(ck.meta, meta, where=ck.path)  # names the keys that differ from run.json's model
    return ck.weights, meta


def load_for_eval(run: str | Path, data: str | None = None, model: ModelSpec = None, dataset=None, tree=None):
    """``(cfg, tree, prepared data)`` of a run folder, on ``data`` (default: the run's own data source) or on
    ``dataset`` (a decoded :class:`~mheads.data.Dataset`, e.g. a user's torch Dataset read by
    ``from_torch_datasets``). ``model``: the model of a run trained on an import path or a Python object,
    named by the user (a run folder never names code to import; see :mod:`mheads.train.reopen`). ``tree``:
    the run's trained TreeNet already in memory (``mheads.fit``'s), used instead of rebuilding it."""
    run = Path(run)
    if not run.is_dir():
        raise ConfigError(f"--run {run}: not a folder; give a run folder written by `mheads train`")
    overrides = [f"data.source={json.dumps(str(data))}"] if data is not None else []
    cfg = load_config(run / "config.yaml", overrides)
    if tree is None:
        weights, meta = load_run_weights(run)
    else:
        meta = _run_meta(run)
    data_prepared = prepare(cfg, resolve_device(cfg.train.device), dataset=dataset)
    where = "(the Dataset given)" if dataset is not None else data or cfg.data.source or "(the embedded data)"
    if isinstance(data_prepared, TensorData):
        return _tensor_run(run, cfg, meta, data_prepared, where, model, tree,
                           weights if tree is None else None)
    _check_fits(data_prepared, meta, where)
    saved = load_normalizer(run, meta["in_channels"], data_prepared.image_size)
    if saved is not None:  # the statistics the model was trained with, whatever data it is evaluated on
        data_prepared.normalizer = saved.to(data_prepared.device)
    if data_prepared.in_channels != meta["in_channels"]:  # colour <-> greyscale, converted as predict does
        if saved is None:
            raise DataError(f"--data {where}: {data_prepared.in_channels}-channel images for a "
                            f"{meta['in_channels']}-channel model, and the run has no saved normalizer to "
                            "apply after converting them (a run from before it was saved)")
        data_prepared.normalizer = ChannelView(data_prepared.normalizer, meta["in_channels"])
    if tree is not None:
        return cfg, tree, data_prepared
    tree = tree_from_meta(meta, where=str(Path(run) / "run.json"), model=model)
    load_weights_checked(tree, weights, run)
    tree.to(data_prepared.device)
    if cfg.train.channels_last:
        tree.to(memory_format=torch.channels_last)
    return cfg, tree, data_prepared


def _tensor_run(run: Path, cfg: Config, meta: dict, data: TensorData, where, model, tree, weights):
    """``load_for_eval`` of a run on inputs of any shape: the data's inputs must be those the run trained on
    (``meta["input"]``); no normalization."""
    if meta.get("input") != data.input_spec():
        raise DataError(f"--data {where}: inputs {data.input_spec()} do not fit the run's model, trained on "
                        f"{meta.get('input', 'images')}")
    if cfg.task.is_classification:  # the classes the model was trained on, whatever this data holds
        data.classes = [str(i) for i in range(meta["num_classes"])]
    if tree is None:
        tree = tree_from_meta(meta, where=str(run / "run.json"), model=model)
        load_weights_checked(tree, weights, run)
    return cfg, tree.to(data.device), data


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
        raise CheckpointError(f"--run {run}: its weights do not fit the model its run.json describes "
                              f"({'; '.join(lines[1:3])[:300]})") from None


def _check_fits(data_prepared, meta: dict, where) -> None:
    got = {"in_channels": data_prepared.in_channels, "image_size": data_prepared.image_size,
           "num_classes": data_prepared.num_classes}
    want = {k: meta[k] for k in got}
    if (got["in_channels"], want["in_channels"]) in CONVERTIBLE:  # colour <-> greyscale: converted
        got["in_channels"] = want["in_channels"]
    if got != want:
        diff = ", ".join(f"{k} {got[k]} (model takes {want[k]})" for k in got if got[k] != want[k])
        raise DataError(f"--data {where}: images do not fit the run's model: {diff}")


def evaluate_run(run: str | Path, data: str | None = None, split: str = "test",
                 model: ModelSpec = None, dataset=None, tree=None, task: Task | None = None) -> dict:
    """A run's metrics on its own data (``split``), on ``data`` (a path) or on ``dataset`` (a decoded image
    Dataset, or a ``TorchData`` of a user's Datasets); ``task``: the run's own Task object where it trained
    a user's task (``task.name: python``), else rebuilt from its config. Any task but classification
    reports its own metrics."""
    cfg, tree, data_prepared = load_for_eval(run, data, model, dataset, tree)
    if isinstance(data_prepared, TensorData):
        task = run_task(cfg, data_prepared, task)
    metrics = evaluate(tree, data_prepared, cfg, LocalComm(), split=split, task=task)
    metrics["classes"] = data_prepared.classes
    return metrics
