"""Re-evaluating a finished (or checkpointed) run's members on its own data or another data set
(:func:`evaluate_run`, ``mheads eval``): the run's config, its saved normalization, the model its run.json
describes with its weights (:mod:`mheads.train.run_model`), evaluated as training evaluated it
(:func:`mheads.train.evaluate.evaluate`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from mheads.config import Config, ConfigError, load_config
from mheads.data import DataError
from mheads.data.channel_view import CONVERTIBLE, ChannelView
from mheads.data.loader import prepare
from mheads.data.tensor_data import AnyShapeData
from mheads.infer.eval_data import scored_split
from mheads.infer.predict_task import npz_input_names
from mheads.infer.task_eval import evaluate_task
from mheads.runs.entries import read_run_json
from mheads.runs.folder import NORMALIZER_FILE
from mheads.runs.run_files import load_normalizer
from mheads.tasks import Classification, Task
from mheads.train.build import tree_from_meta
from mheads.train.comm import LocalComm
from mheads.train.device import resolve_device
from mheads.train.evaluate import evaluate
from mheads.train.reopen import ModelSpec, check_meta
from mheads.train.run_model import load_run_weights, load_weights_checked, run_meta
from mheads.train.task_run import run_task

__all__ = [
    "PYTHON_DATA",
    "RunEvaluation",
    "evaluate_run",
    "evaluate_run_arrays",
    "load_for_eval",
    "trained_on_python_data",
]

PYTHON_DATA = "python Datasets"  # run.json's data source of a run trained on the user's Datasets


def trained_on_python_data(run: Path) -> bool:
    """Whether ``run`` trained on a user's Datasets (given to ``mheads.fit``), not held in its folder."""
    try:
        return read_run_json(run)["data"]["source"] == PYTHON_DATA  # bounded, no FIFO, no link
    except (ConfigError, KeyError, TypeError):  # the readers of the folder name what is wrong with it
        return False


def load_for_eval(
    run: str | Path,
    data: str | None = None,
    model: ModelSpec = None,
    dataset=None,
    tree=None,
    split: str = "test",
):
    """``(cfg, tree, prepared data)`` of a run folder, on ``data`` (default: the run's own data source) or on
    ``dataset`` (a decoded :class:`~mheads.data.Dataset`, e.g. a user's torch Dataset read by
    ``from_torch_datasets``). ``model``: the model of a run trained on an import path or a Python object,
    named by the user (a run folder never names code to import; see :mod:`mheads.train.reopen`). ``tree``:
    the run's trained TreeNet already in memory (``mheads.fit``'s), used instead of rebuilding it. ``split``:
    the split to be scored, the only one read from an image source where the run saved its normalizer
    (:mod:`mheads.infer.eval_data`)."""
    run = Path(run)
    _check_run_folder(run, data, dataset)
    overrides = [f"data.source={json.dumps(str(data))}"] if data is not None else []
    cfg = load_config(run / "config.yaml", overrides)
    if tree is None:
        weights, meta = load_run_weights(run)
    else:
        meta = run_meta(run)
    # its sizes are compared with the data's below: an edited size (num_classes: true) names run.json
    check_meta(meta, str(run / "run.json"))
    if data is not None:  # a run trained from Python on dict inputs reads those arrays of an .npz file
        cfg.data.inputs = npz_input_names(cfg.data.inputs, meta.get("input"))
    device = resolve_device(cfg.train.device)
    data_prepared = None
    if dataset is None and (run / NORMALIZER_FILE).exists():
        data_prepared = scored_split(cfg, device, split)
    if data_prepared is None:
        data_prepared = prepare(cfg, device, dataset=dataset)
    where = "(the Dataset given)" if dataset is not None else data or cfg.data.source or "(the embedded data)"
    if isinstance(data_prepared, AnyShapeData):
        return _tensor_run(
            run, cfg, meta, data_prepared, where, model, tree, weights if tree is None else None
        )
    if dataset is not None:
        _in_run_numbering(data_prepared, meta)
    _check_fits(data_prepared, meta, where)
    _use_saved_normalizer(run, meta, data_prepared, where)
    if tree is not None:
        return cfg, tree, data_prepared
    tree = tree_from_meta(meta, where=str(Path(run) / "run.json"), model=model)
    load_weights_checked(tree, weights, run)
    tree.to(data_prepared.device)
    if cfg.train.channels_last:
        tree.to(memory_format=torch.channels_last)
    return cfg, tree, data_prepared


def _check_run_folder(run: Path, data: str | None, dataset) -> None:
    if not run.is_dir():
        raise ConfigError(f"--run {run}: not a folder; give a run folder written by `mheads train`")
    if data is None and dataset is None and trained_on_python_data(run):
        # its config's data.source is null, which would read the embedded Fashion-MNIST set in its place
        raise ConfigError(
            f"--run {run}: trained on Python Datasets, which its folder does not hold; expected --data PATH "
            "(a data set mheads reads), or from Python mheads.evaluate(run, dataset)"
        )


def _use_saved_normalizer(run: Path, meta: dict, data_prepared, where) -> None:
    """Normalize ``data_prepared`` with the statistics the model was trained with (whatever data it is
    evaluated on), through a colour <-> greyscale view where the channels differ, as predict converts them."""
    saved = load_normalizer(run, meta["in_channels"], data_prepared.image_size)
    if saved is not None:
        data_prepared.normalizer = saved.to(data_prepared.device)
    if data_prepared.in_channels != meta["in_channels"]:
        if saved is None:
            raise DataError(
                f"--data {where}: {data_prepared.in_channels}-channel images for a "
                f"{meta['in_channels']}-channel model, and the run has no saved normalizer to "
                "apply after converting them (a run from before it was saved)"
            )
        data_prepared.normalizer = ChannelView(data_prepared.normalizer, meta["in_channels"])


def _tensor_run(run: Path, cfg: Config, meta: dict, data: AnyShapeData, where, model, tree, weights):
    """``load_for_eval`` of a run on inputs of any shape: the data's inputs must be those the run trained on
    (``meta["input"]``); no normalization."""
    if meta.get("input") != data.input_spec():
        raise DataError(
            f"--data {where}: inputs {data.input_spec()} do not fit the run's model, trained on "
            f"{meta.get('input', 'images')}"
        )
    if cfg.task.is_classification:  # the classes the model was trained on, whatever this data holds
        data.classes = [str(i) for i in range(meta["num_classes"])]
    if tree is None:
        tree = tree_from_meta(meta, where=str(run / "run.json"), model=model)
        load_weights_checked(tree, weights, run)
    return cfg, tree.to(data.device), data


def _in_run_numbering(data_prepared, meta: dict) -> None:
    """A user's Dataset need not hold every class: one whose classes are counted from its labels (no names)
    and number fewer than the run's is read in the run's numbering, its labels being the model's class
    indices (a test set of 8 images without a 9 was refused as 'num_classes 7 (model takes 10)')."""
    counted = [str(i) for i in range(data_prepared.num_classes)]
    if data_prepared.classes == counted and data_prepared.num_classes < meta["num_classes"]:
        data_prepared.classes = [str(i) for i in range(meta["num_classes"])]


def _check_fits(data_prepared, meta: dict, where) -> None:
    got = {
        "in_channels": data_prepared.in_channels,
        "image_size": data_prepared.image_size,
        "num_classes": data_prepared.num_classes,
    }
    want = {k: meta[k] for k in got}
    if (got["in_channels"], want["in_channels"]) in CONVERTIBLE:  # colour <-> greyscale: converted
        got["in_channels"] = want["in_channels"]
    if got != want:
        diff = ", ".join(f"{k} {got[k]} (model takes {want[k]})" for k in got if got[k] != want[k])
        raise DataError(f"--data {where}: images do not fit the run's model: {diff}")


@dataclass(frozen=True)
class RunEvaluation:
    """A run's evaluation: its ``metrics`` (what :func:`evaluate_run` returns), the ``task`` it was evaluated
    under (None for image classification) and, for a task run, the per-example ``arrays`` its report's
    figures draw (:mod:`mheads.infer.task_eval`)."""

    metrics: dict
    task: Task | None
    arrays: dict[str, torch.Tensor]


def evaluate_run(
    run: str | Path,
    data: str | None = None,
    split: str = "test",
    model: ModelSpec = None,
    dataset=None,
    tree=None,
    task: Task | None = None,
) -> dict:
    """A run's metrics on its own data (``split``), on ``data`` (a path) or on ``dataset`` (a decoded image
    Dataset, or a ``TorchData`` of a user's Datasets); ``task``: the run's own Task object where it trained
    a user's task (``task.name: python``), else rebuilt from its config. Any task but classification
    reports its own metrics plus the report's (:mod:`mheads.infer.task_eval`: win shares, each member's
    error, a coverage curve, per-class IoU)."""
    return evaluate_run_arrays(run, data, split, model, dataset, tree, task).metrics


def evaluate_run_arrays(
    run: str | Path,
    data: str | None = None,
    split: str = "test",
    model: ModelSpec = None,
    dataset=None,
    tree=None,
    task: Task | None = None,
) -> RunEvaluation:
    """:func:`evaluate_run` with the task and the per-example arrays a report draws."""
    cfg, tree, data_prepared = load_for_eval(run, data, model, dataset, tree, split)
    arrays: dict[str, torch.Tensor] = {}
    if isinstance(data_prepared, AnyShapeData):
        task = run_task(cfg, data_prepared, task)
    if task is not None and not isinstance(task, Classification):
        metrics, arrays = evaluate_task(tree, data_prepared, task, cfg.train.eval_batch_size, split)
    else:
        found = evaluate(tree, data_prepared, cfg, LocalComm(), split=split, task=task)
        assert found is not None  # one process, the root: evaluate returns its metrics
        metrics = found
    metrics["classes"] = data_prepared.classes
    return RunEvaluation(metrics, task, arrays)
