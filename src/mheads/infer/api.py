"""The Python API's evaluation and prediction: ``mheads.evaluate`` and ``mheads.predict``, thin over
``mheads eval`` / ``mheads predict``'s code (:mod:`mheads.infer.evaluate`, :mod:`mheads.infer.predict`).

A run folder (or the :class:`~mheads.train.result.FitResult` of ``mheads.fit``) is evaluated as training
evaluated it: the run's config, its saved normalization, its image size. A bare :class:`TreeNet` has no run:
it sees the batches exactly as the data gives them (uint8 images scaled to [0, 1], nothing else), so a tree
trained in your own loop is evaluated on what your loop fed it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from mheads.config import ConfigError, task_config_of
from mheads.core.seeding import Stream, derived_generator
from mheads.data.errors import DataError
from mheads.data.from_torch import _image, _label, from_torch_datasets, pair
from mheads.data.loader import TorchData
from mheads.data.tensors import model_view
from mheads.ensemble.accumulator import EnsembleMetrics
from mheads.infer import predict as predicting
from mheads.infer.evaluate import evaluate_run, trained_on_python_data
from mheads.infer.predict_files import read_input_files
from mheads.infer.predict_oracle import UnfitTargets, leave_out, pair_targets, without_oracle
from mheads.infer.predict_task import is_tensor_run, predict_inputs
from mheads.infer.task_eval import evaluate_task
from mheads.tasks import Classification, Task
from mheads.train.reopen import ModelSpec
from mheads.train.result import FitResult
from mheads.tree import TreeNet

__all__ = ["evaluate", "predict"]

EVAL_BATCH = 256  # a bare TreeNet's Dataset, batched in order


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _run(run: Any, what: str) -> tuple[Path, TreeNet | None]:
    """A run folder and, for a FitResult, its trained tree (in memory: no model= needed to rebuild it)."""
    if isinstance(run, FitResult):
        return Path(run.run), run.tree
    if _is_path(run):
        return Path(run), None
    raise ConfigError(
        f"{what}: got {type(run).__name__}; expected a run folder, the FitResult of mheads.fit"
        f"{' or a TreeNet' if what == 'run_or_tree' else ''}"
    )


def _dataset(data: Any) -> Any:
    return data.dataset if isinstance(data, DataLoader) else data


def evaluate(
    run_or_tree: Any,
    data: Any = None,
    *,
    model: ModelSpec = None,
    split: str = "test",
    batch_size: int | None = None,
    task: Task | None = None,
) -> dict:
    """Every ensemble metric (``ensemble_mean_acc``, ``oracle_acc``, ``member_acc``, NLL, ECE, ...).

    Args:
        run_or_tree: a run folder written by ``mheads.fit`` / ``mheads train``, or ``fit``'s
            :class:`FitResult`, evaluated as ``mheads eval`` does (the run's config, normalization and image
            size); or a :class:`TreeNet`, which sees the batches as ``data`` gives them.
        data: for a run: None (its own data, ``split``), a data path, or a map-style Dataset (or a DataLoader
            over one: its dataset) of ``(image, label)`` as ``fit`` takes them, read whole and evaluated
            under the run's settings (``data.test_limit`` included). For a TreeNet (required): a
            ``DataLoader`` (its batches, as they come), or a Dataset of ``(image, label)`` batched in order.
        model: for a run folder trained on a Python object or an import path, the model (see
            ``mheads.load_run``).
        split: the run's split with ``data=None`` (``"test"``, ``"val"``, ``"ood"``, ``"train"``).
        batch_size: a TreeNet's Dataset is read this many items at a time (default 256).
        task: a run that trained a user's task (``custom_task``): that Task again; a TreeNet of any task
            but classification: its task (then ``data`` holds ``(input, target)`` pairs of any shape). A
            run's built-in task comes from its config, and its metrics are the task's plus the eval
            report's (``win_share``, ``member_error``, ...: :mod:`mheads.infer.task_eval`, docs/tasks.md).
    """
    if isinstance(run_or_tree, TreeNet):
        if data is None or _is_path(data):
            raise ConfigError(
                f"data: got {data!r}; a TreeNet is evaluated on a Dataset or DataLoader of "
                "(image, label) (a data path needs a run: pass the run folder)"
            )
        if task is not None and not isinstance(task, Classification):
            return _tree_task_metrics(run_or_tree, task, _dataset(data), batch_size or EVAL_BATCH)
        return _tree_metrics(run_or_tree, _batches(data, batch_size or EVAL_BATCH))
    run, tree = _run(run_or_tree, "run_or_tree")
    if is_tensor_run(run):  # a run on inputs of any shape (any task): its data read as tensors
        if data is None and trained_on_python_data(run):
            raise ConfigError(
                f"data: got None; the run {run} trained on Python Datasets, which its folder "
                "does not hold: pass the Dataset (or DataLoader) to evaluate on"
            )
        if data is None or _is_path(data):
            return evaluate_run(run, None if data is None else str(data), split, model, tree=tree, task=task)
        return evaluate_run(run, None, "test", model, dataset=TorchData(_dataset(data)), tree=tree, task=task)
    if data is None and trained_on_python_data(run):
        raise ConfigError(
            f"data: got None; the run {run} trained on Python Datasets, which its folder does "
            "not hold: pass the Dataset (or DataLoader) to evaluate on, e.g. your test set"
        )
    if data is None or _is_path(data):
        return evaluate_run(run, None if data is None else str(data), split, model, tree=tree)
    dataset = from_torch_datasets(_dataset(data))  # one read: its test split is the same as its train
    return evaluate_run(run, None, "test", model, dataset=dataset, tree=tree)


def _tree_task_metrics(tree: TreeNet, task: Task, ds: Any, batch_size: int) -> dict:
    """A bare TreeNet's task metrics (and the report's: :mod:`mheads.infer.task_eval`) on ``(input,
    target)`` pairs of any shape, batched in order."""
    from mheads.config import Config
    from mheads.data.tensor_data import prepare_tensors

    device = next(tree.parameters()).device
    cfg = Config()
    cfg.task = task_config_of(task)
    data = prepare_tensors(cfg, device, ds, None, classes=[])
    return evaluate_task(tree, data, task, batch_size)[0]


def _batches(data: Any, batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, DataLoader):
        return data
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise ConfigError(
            f"data: got {type(data).__name__}; expected a map-style Dataset of (image, label) or a DataLoader"
        )
    return _in_order(data, batch_size)


def _in_order(ds, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(ds), batch_size):
        xs, ys = [], []
        for i in range(start, min(start + batch_size, len(ds))):
            x, y = pair(ds[i], f"data[{i}]")
            xs.append(torch.from_numpy(_image(x, f"data[{i}]")))
            ys.append(_label(y, f"data[{i}]"))
        yield torch.stack(xs), torch.tensor(ys)


@torch.no_grad()
def _tree_metrics(tree: TreeNet, batches: Iterable) -> dict:
    device = next(tree.parameters()).device
    was_training = tree.training
    tree.eval()
    acc = None
    try:
        for batch in batches:
            x, y = batch[0], batch[1]
            x = x.to(device)
            x = model_view(x)  # as fit gives it: uint8 is pixels, scaled to [0, 1]
            logits = tree(x).float().cpu()  # (M, B, C)
            if acc is None:  # the classes: the members' output width
                acc = EnsembleMetrics(
                    tree.num_members, logits.shape[-1], generator=derived_generator(0, Stream.ORACLE_TIES)
                )
            acc.update(logits, torch.as_tensor(y).cpu())
    finally:
        tree.train(was_training)
    if acc is None:
        raise DataError("data: no batches; expected a non-empty Dataset or DataLoader")
    return acc.compute()


def predict(
    run: Any,
    inputs: Any,
    *,
    model: ModelSpec = None,
    top: int = 3,
    batch_size: int = 64,
    task: Task | None = None,
) -> list[dict]:
    """What the ensemble of a run says about ``inputs``: one record per image, as ``mheads predict`` prints
    them (the top classes with the members' averaged probabilities, each member's top class, the entropy
    split, disagreement, the OOD flag where the run has a threshold, an assigning loss's ranked proposals).

    Args:
        run: a run folder, or ``mheads.fit``'s :class:`FitResult`.
        inputs: image files or folders (a path or a list of them; records name each ``path``, an unreadable
            file gets an ``error``), or images as tensors: a batch ``(N, C, H, W)`` (or one ``(C, H, W)``),
            a map-style Dataset of images or ``(image, label)`` pairs (records then also name the ``target``
            and the ``oracle``: whether any member is right, and the first that is; labels that are not the
            run's classes leave both out, with one ``UserWarning``), or a DataLoader over one; uint8 or
            [0, 1] float at the run's channels and image size (records name each ``index``).
        model: for a run folder trained on a Python object or an import path, the model (see
            ``mheads.load_run``).
        top: how many of the ensemble's classes each record lists.
        task: for a run that trained a user's task, that Task again.

    A run on inputs of any shape (any task; see :mod:`mheads.infer.predict_task`) takes ``inputs`` as a
    batch ``(N, ...)`` (or one example), a dict of batched tensors, a map-style Dataset of inputs or
    ``(input, target)`` pairs, or files (table rows, ``.npz`` arrays, images); each record holds every
    member's hypothesis (and score), the ensemble's prediction and its uncertainty; inputs with targets (a
    Dataset of ``(input, target)`` pairs, table rows holding the run's target columns) also the ``target``
    and the ``oracle``: the member closest to it and its error (:mod:`mheads.infer.predict_oracle`).
    """
    path, tree = _run(run, "run")
    if is_tensor_run(path):
        return _predict_task_inputs(path, inputs, model, tree, task, top, batch_size)
    paths = _paths(inputs)
    if paths is not None:
        return predicting.predict(path, paths, top=top, batch_size=batch_size, model=model, tree=tree)
    opened = predicting.open_run(path, model=model, tree=tree)
    if isinstance(inputs, torch.Tensor):
        return _predict_image_tensor(opened, inputs, top, batch_size)
    return _predict_image_dataset(opened, inputs, top, batch_size)


def _paths(inputs: Any) -> list[Any] | None:
    """``inputs`` as a list of paths when it is a path or a non-empty list of them, else None."""
    if _is_path(inputs):
        return [inputs]
    if isinstance(inputs, (list, tuple)) and inputs and all(map(_is_path, inputs)):
        return list(inputs)
    return None


def _predict_task_inputs(path: Path, inputs: Any, model, tree, task, top: int, batch_size: int) -> list[dict]:
    """A run on inputs of any shape: files (table rows, arrays, images) or tensors and Datasets."""
    paths = _paths(inputs)
    keys = None
    if paths is not None:
        inputs, keys = read_input_files(path, [str(p) for p in paths])
    return predict_inputs(
        path, inputs, model=model, tree=tree, task=task, top=top, batch_size=batch_size, keys=keys
    )


def _predict_image_tensor(opened, inputs: torch.Tensor, top: int, batch_size: int) -> list[dict]:
    """Images as a tensor batch ``(N, C, H, W)`` or one image ``(C, H, W)``."""
    images = inputs.unsqueeze(0) if inputs.ndim == 3 else inputs
    if images.ndim != 4:
        raise DataError(
            f"inputs: a tensor of shape {tuple(inputs.shape)}; expected images (N, C, H, W) "
            "or one image (C, H, W)"
        )
    return predicting.predict_images(opened, _uint8(list(images), 0), top=top, batch_size=batch_size)


def _predict_image_dataset(opened, inputs: Any, top: int, batch_size: int) -> list[dict]:
    """A map-style Dataset of images or ``(image, label)`` pairs (or a DataLoader over one), in order."""
    ds = _dataset(inputs)
    if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
        raise ConfigError(
            f"inputs: got {type(inputs).__name__}; expected image paths, a tensor of images, "
            "or a map-style Dataset (or DataLoader) of images"
        )
    records: list[dict] = []
    fits = True  # until a label the run cannot read: then no record names an oracle, and one line says why
    for start in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
        images = _uint8([item[0] if isinstance(item, (tuple, list)) else item for item in items], start)
        labelled = all(isinstance(item, (tuple, list)) and len(item) == 2 for item in items) and any(
            item[1] is not None for item in items
        )  # (image, label) pairs: each record also names its oracle
        try:
            targets = pair_targets([item[1] for item in items], start) if labelled and fits else None
            chunk = predicting.predict_images(
                opened, images, top=top, batch_size=batch_size, first=start, targets=targets
            )
        except UnfitTargets as err:  # an OOD label, a class the run never trained on, text
            leave_out(err)
            fits, records = False, without_oracle(records)
            chunk = predicting.predict_images(opened, images, top=top, batch_size=batch_size, first=start)
        records.extend(chunk)
    return records


def _uint8(images: list, first: int) -> torch.Tensor:
    """Images as fit reads them (uint8; [0, 1] floats scaled and rounded), stacked."""
    return torch.stack([torch.from_numpy(_image(x, f"inputs[{first + i}]")) for i, x in enumerate(images)])
