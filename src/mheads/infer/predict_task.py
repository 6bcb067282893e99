"""``mheads predict`` for any task (issue 32): one record per input (a table row, an array, an image) with
each member's hypothesis (and score), the ensemble's prediction and its uncertainty.

Records (every number rounded to 6 significant digits; ``key`` is ``index`` or ``path``):

- regression: ``prediction`` (the members' mean, D values), ``std`` (the mixture's standard deviation),
  ``aleatoric`` and ``epistemic`` (its variance split: the mean of the members' variances, the variance of
  their means; ``aleatoric`` is None for point heads, which estimate no noise), ``members`` (each
  ``{"mean": [...]}``, with ``"variance"`` for Gaussian heads);
- multi_hypothesis: ``prediction`` (the score-weighted mean hypothesis), ``spread`` (the weighted RMS
  distance of the hypotheses from it), ``members`` (each ``{"hypothesis": [...], "score": weight}``, the
  weights summing to 1), ranked by score in ``best`` (the index of the highest-scored member);
- segmentation: ``prediction`` (the ensemble's mask, H rows of W classes), ``entropy`` (the mean pixel entropy
  of the mean probabilities), ``members`` (each ``{"mask": the member's own mask, H rows of W classes,
  "agreement": the share of pixels where it equals the ensemble's}``);
- a user's task: ``prediction`` (``task.combine``'s output as nested lists) and ``members`` (each member's
  output).

Classification of inputs that are not images answers as :mod:`mheads.infer.predict` does. Inputs that carry
targets (table rows or an ``.npz`` file holding the run's, :mod:`mheads.infer.predict_files`; a Dataset of
``(input, target)`` pairs) add to each record its ``target`` and ``oracle``, the member closest to it and its
error (:mod:`mheads.infer.predict_oracle`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mheads.config import ConfigError, build_task
from mheads.config.task import PYTHON_TASK
from mheads.data.errors import DataError
from mheads.data.pairs import TensorPairs
from mheads.data.tensors import as_tensor, model_view, take
from mheads.infer.predict_oracle import UnfitTargets, leave_out, oracle_fields, pair_targets, without_oracle
from mheads.tasks import Classification, MultiHypothesis, Regression, Segmentation, Task

__all__ = ["is_tensor_run", "npz_input_names", "predict_inputs", "task_records"]


def _r(x: Any) -> Any:
    """Nested lists of floats rounded to 6 significant digits."""
    if isinstance(x, torch.Tensor):
        x = x.tolist()
    if isinstance(x, list):
        return [_r(v) for v in x]
    if isinstance(x, float):
        return float(f"{x:.6g}") if math.isfinite(x) else x
    return x


def task_records(task: Task, outputs: torch.Tensor, keys: list[tuple[str, Any]]) -> list[dict]:
    """Records for ``outputs: (M, B, ...)`` of one batch, ``keys`` naming each input (see the module
    docstring)."""
    outputs = outputs.detach().float().cpu()
    if isinstance(task, Regression):
        fields = _regression_fields(task, outputs)
    elif isinstance(task, MultiHypothesis):
        fields = _hypothesis_fields(task, outputs)
    elif isinstance(task, Segmentation):
        fields = _segmentation_fields(task, outputs)
    else:
        fields = _custom_fields(task, outputs)
    return [{key: value, "task": task.name, **fields(i)} for i, (key, value) in enumerate(keys)]


Fields = Callable[[int], dict]  # example i of the batch -> its record's fields


def _regression_fields(task: Regression, outputs: torch.Tensor) -> Fields:
    combined = task.combine(outputs)
    mean, var = task.moments(outputs)
    gaussian = task.head == "gaussian"

    def fields(i: int) -> dict:
        members = [
            {"mean": _r(mean[m, i])} | ({"variance": _r(var[m, i])} if gaussian else {})
            for m in range(outputs.shape[0])
        ]
        return {
            "prediction": _r(combined.mean[i]),
            "std": _r(combined.variance[i].sqrt()),
            "aleatoric": _r(combined.aleatoric[i]) if gaussian else None,  # a point head predicts no noise
            "epistemic": _r(combined.epistemic[i]),
            "members": members,
        }

    return fields


def _hypothesis_fields(task: MultiHypothesis, outputs: torch.Tensor) -> Fields:
    hyp = task.combine(outputs)
    centre = hyp.mean()  # (B, D)
    spread = (hyp.weights * (hyp.points - centre).square().sum(-1)).sum(0).sqrt()  # (B,)

    def fields(i: int) -> dict:
        return {
            "prediction": _r(centre[i]),
            "spread": _r(float(spread[i])),
            "best": int(hyp.weights[:, i].argmax()),
            "members": [
                {"hypothesis": _r(hyp.points[m, i]), "score": _r(float(hyp.weights[m, i]))}
                for m in range(outputs.shape[0])
            ],
        }

    return fields


def _segmentation_fields(task: Segmentation, outputs: torch.Tensor) -> Fields:
    log_probs = task.combine(outputs)  # (B, C, H, W)
    mask = log_probs.argmax(dim=1)  # (B, H, W)
    entropy = -(log_probs.exp() * log_probs).sum(dim=1).mean(dim=(-2, -1))  # (B,)
    member_masks = outputs.argmax(dim=2)  # (M, B, H, W): each member's hypothesis
    agree = (member_masks == mask.unsqueeze(0)).float().mean(dim=(-2, -1))  # (M, B)

    def fields(i: int) -> dict:
        return {
            "prediction": mask[i].tolist(),
            "entropy": _r(float(entropy[i])),
            "members": [
                {"mask": member_masks[m, i].tolist(), "agreement": _r(float(agree[m, i]))}
                for m in range(outputs.shape[0])
            ],
        }

    return fields


def _custom_fields(task: Task, outputs: torch.Tensor) -> Fields:
    combined = task.combine(outputs)

    def fields(i: int) -> dict:
        return {
            "prediction": _r(combined[i] if isinstance(combined, torch.Tensor) else None),
            "members": [{"output": _r(outputs[m, i])} for m in range(outputs.shape[0])],
        }

    return fields


def is_tensor_run(run) -> bool:
    """Whether a run folder trained on inputs of any shape (its meta records ``input``)."""
    from mheads.train.run_model import run_meta

    try:
        return "input" in run_meta(Path(run))
    except ConfigError:
        return False


def npz_input_names(inputs: str | list[str] | None, spec: Any) -> str | list[str]:
    """The arrays of an ``.npz`` file a run's model takes: its ``data.inputs``; for a run that names none (one
    trained from Python) the keys of its recorded dict input (``spec``, run meta's ``input``), else "x"."""
    if inputs is not None:
        return inputs
    keys = spec.get("dict") if isinstance(spec, dict) else None
    return [str(k) for k in keys] if isinstance(keys, dict) and keys else "x"


def _batched(x: Any, spec: dict, where: str) -> Any:
    """Inputs as a batch: ``(N, ...)`` or one example of the recorded shape (a dict: per key), read as
    training read them (uint8: pixels, :func:`~mheads.data.tensors.pixels_scaled`)."""
    if isinstance(x, dict):
        inner = spec.get("dict") or {}
        return {k: _batched(v, inner.get(k, {}), f"{where}[{k!r}]") for k, v in x.items()}
    t = as_tensor(x, where)
    if t.dtype == torch.uint8 and spec.get("dtype") == "int64":  # ids trained on, pixels given
        raise DataError(
            f"{where}: uint8, read as pixels scaled to [0, 1]; the run trained on int64 values here "
            "(token ids, masks, codes): give them as int64 (or int32)"
        )
    shape = spec.get("shape")
    if isinstance(shape, list) and list(t.shape) == shape:
        t = t.unsqueeze(0)
    if isinstance(shape, list) and list(t.shape[1:]) != shape:
        raise DataError(
            f"{where}: shape {tuple(t.shape)}; expected (N, {', '.join(map(str, shape))}) or one "
            f"example {tuple(shape)}, what the run trained on"
        )
    return t


def _examples(inputs: Any, spec: dict) -> list[tuple[Any, int, torch.Tensor | None]]:
    """``inputs`` as ``(batch, first index, its targets or None)`` chunks: a Dataset of ``(input, target)``
    pairs carries targets (:func:`~mheads.infer.predict_oracle.pair_targets`)."""
    if isinstance(inputs, (torch.Tensor, dict)):
        return [(_batched(inputs, spec, "inputs"), 0, None)]
    ds = inputs.dataset if isinstance(inputs, torch.utils.data.DataLoader) else inputs
    targets: torch.Tensor | None
    if isinstance(ds, TensorPairs) and isinstance(ds.inputs, (torch.Tensor, dict)):
        targets = ds.targets if isinstance(ds.targets, torch.Tensor) else _paired(list(ds.targets))
        return [(_batched(ds.inputs, spec, "inputs"), 0, targets)]
    if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
        raise ConfigError(
            f"inputs: got {type(inputs).__name__}; expected a tensor (N, ...), a dict of them, "
            "or a map-style Dataset of inputs or (input, target) pairs"
        )
    items = [ds[i] for i in range(len(ds))]
    pairs = all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items)
    labelled = pairs and any(it[1] is not None for it in items)  # (input, None): unlabelled
    targets = _paired([it[1] for it in items]) if labelled else None
    items = [it[0] if isinstance(it, (tuple, list)) else it for it in items]
    if isinstance(items[0], dict):
        stacked: Any = {
            k: torch.stack([as_tensor(it[k], f"inputs[{i}][{k!r}]") for i, it in enumerate(items)])
            for k in items[0]
        }
    else:
        stacked = torch.stack([as_tensor(it, f"inputs[{i}]") for i, it in enumerate(items)])
    return [(_batched(stacked, spec, "inputs"), 0, targets)]


def _paired(targets: list[Any]) -> torch.Tensor | None:
    """The pairs' targets as one tensor, or None (with a UserWarning) where they do not stack."""
    try:
        return pair_targets(targets)
    except UnfitTargets as err:
        leave_out(err)
        return None


def predict_inputs(
    run,
    inputs: Any,
    *,
    model=None,
    tree=None,
    task: Task | None = None,
    top: int = 3,
    batch_size: int = 64,
    keys: list[tuple[str, Any]] | None = None,
) -> list[dict]:
    """One record per input of a run trained on inputs of any shape (see the module docstring):
    ``inputs`` a batch ``(N, ...)`` (or one example), a dict of batched tensors, or a Dataset of inputs or
    ``(input, target)`` pairs (whose records also name the oracle: :mod:`mheads.infer.predict_oracle`;
    targets that do not fit the run leave it out of every record, with one ``UserWarning``);
    ``task``: the run's Task object where it trained a user's task."""
    from mheads.infer.predict import _classes, _records

    run = Path(run)
    tree, task, meta = _opened(run, model, tree, task)
    device = next(tree.parameters()).device
    classes = _classes(run, meta) if isinstance(task, Classification) else None
    records: list[dict] = []
    for batch, first, targets in _examples(inputs, meta["input"]):
        n = len(next(iter(batch.values()))) if isinstance(batch, dict) else len(batch)
        for start in range(0, n, batch_size):
            x = take(batch, slice(start, start + batch_size))
            x = {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)
            x = model_view(x)  # as training saw it
            with torch.no_grad():
                outputs = tree(x).float().cpu()
            names = (
                keys[first + start : first + start + outputs.shape[1]]
                if keys is not None
                else [("index", first + start + i) for i in range(outputs.shape[1])]
            )
            if classes is not None:
                chunk = _records(names, outputs, classes, max(1, min(top, len(classes))), False, None)
            else:
                chunk = task_records(task, outputs, names)
            if targets is not None:  # the member closest to each target, and its error
                try:
                    found = oracle_fields(task, outputs, targets[start : start + batch_size], classes, names)
                    chunk = [record | extra for record, extra in zip(chunk, found, strict=True)]
                except UnfitTargets as err:  # predicting needs no targets: none of the records names one
                    leave_out(err)
                    targets, records = None, without_oracle(records)
            records.extend(chunk)
    return records


def _opened(run: Path, model, tree, task: Task | None) -> tuple[Any, Task, dict]:
    """The run's TreeNet (``tree``, else built from the folder), in eval mode, its task and its meta."""
    from mheads.config import load_config
    from mheads.train.build import tree_from_meta
    from mheads.train.run_model import load_run_weights, load_weights_checked, run_meta

    cfg = load_config(run / "config.yaml")
    meta = run_meta(run)
    if tree is None:
        weights, meta = load_run_weights(run)
        tree = tree_from_meta(meta, where=str(run / "run.json"), model=model)
        load_weights_checked(tree, weights, run)
    tree.eval()
    if task is None:
        if cfg.task.name == PYTHON_TASK:
            raise ConfigError(
                f"task: got None; the run {run} trained a user's task: pass it again (task=...)"
            )
        task = build_task(cfg.task, num_classes=meta["num_classes"], label_smoothing=cfg.loss.label_smoothing)
    return tree, task, meta
