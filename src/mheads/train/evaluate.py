"""Evaluation on a split during training: every ensemble metric (:func:`evaluate`), or a task's own metrics
(:func:`task_metrics`). Re-evaluating a finished run is :mod:`mheads.infer.evaluate`'s."""

from __future__ import annotations

import torch

from mheads.config import Config
from mheads.core.seeding import Stream, derived_generator
from mheads.ensemble.accumulator import EnsembleMetrics
from mheads.tasks import Classification, Task, TaskMetrics

__all__ = ["evaluate", "task_metrics"]


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
    acc = EnsembleMetrics(
        cfg.model.members, data.num_classes, generator=derived_generator(cfg.train.seed, Stream.ORACLE_TIES)
    )
    scored = getattr(model, "scoring", None) is not None and hasattr(model, "forward_with_scores")
    right, seen = [0, 0], 0  # correct (scored, score-weighted) predictions, examples
    try:  # a model that raises mid-split is handed back in the mode it came in
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
    finally:
        model.train(was_training)
    if not comm.is_root:
        return None
    metrics = acc.compute()
    if scored:
        metrics.update(scored_acc=right[0] / max(seen, 1), score_weighted_acc=right[1] / max(seen, 1))
    return metrics
