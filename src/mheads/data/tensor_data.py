"""The data of any shape the training loop reads (issue 32): :class:`AnyShapeData`, what resident and
streamed data give training, evaluation and the task; :class:`TensorData`, a user's ``(input, target)``
Datasets decoded whole onto the training device; and :func:`prepare_tensors`, which builds it from a config,
refusing the ``data:`` settings inputs read as tensors cannot honour. The tensor helpers it stands on (one
uint8 rule, shapes, batching of dict inputs) are :mod:`mheads.data.tensors`'.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from mheads.config import Config, ConfigError
from mheads.data.batching import BatchPlan, shard_rows
from mheads.data.rows import RowChoice, bagging_weights, choose_rows, class_targets, count_classes
from mheads.data.tensors import (
    Inputs,
    _rows,
    check_splits_alike,
    input_spec,
    model_view,
    read_pairs,
    take,
    to_device,
)

__all__ = ["AnyShapeData", "TensorData", "prepare_tensors", "refuse_image_settings", "refuse_normalize"]


class AnyShapeData(ABC):
    """What the training loop, evaluation and the task read from data of any shape, resident
    (:class:`TensorData`) or streamed (:class:`~mheads.data.dataset_stream.DatasetStream`): a
    :class:`~mheads.data.batching.BatchSource` whose inputs are given as the model takes them (no
    normalizer) and whose run meta records the input's description (:func:`input_spec`), not an image
    shape."""

    device: torch.device
    shard: tuple[int, int] | None
    classes: list[str] | None
    source: str
    normalizer: Any = None  # no normalization: the inputs are given as the model takes them
    in_channels: int = 1  # not images: the run's meta records "input" (input_spec) instead
    image_size: int = 1

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else 0

    @abstractmethod
    def train_batch(
        self, b: int, generator: torch.Generator | None = None
    ) -> tuple[Inputs, torch.Tensor, Any]:
        """Batch ``b`` (this replica's rows with ``shard``): (inputs, targets, per-member weights (M, B) or
        None)."""

    @abstractmethod
    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[Inputs, torch.Tensor]]:
        """``(inputs, targets)`` of ``split`` in order, ``batch_size`` at a time."""

    @abstractmethod
    def split_size(self, split: str) -> int:
        """Examples in ``split`` (train, test, val or ood; 0 for a split the run does not have)."""

    @abstractmethod
    def example_input(self) -> Inputs:
        """The first training example, a batch of 1 on the CPU, as the model sees it."""

    @abstractmethod
    def input_spec(self) -> dict:
        """One training input's shape and dtype as stored (:func:`input_spec`)."""

    @abstractmethod
    def task_targets(self) -> torch.Tensor:
        """Training targets ``(n, ...)`` on which the task's sizes are read (``mheads.train.task_run``):
        every one where resident, the first where streamed."""

    def describe(self) -> dict:
        y = self.task_targets()
        out: dict[str, Any] = {
            "source": self.source,
            "classes": self.classes,
            "train": self.split_size("train"),
            "test": self.split_size("test"),
            "input": self.input_spec(),
            "target": {"shape": list(y.shape[1:]), "dtype": str(y.dtype).removeprefix("torch.")},
        }
        if self.split_size("val"):
            out["val"] = self.split_size("val")
        return out


@dataclass
class TensorData(AnyShapeData):
    """The decoded splits on the training device and the batching state (see the module docstring)."""

    device: torch.device
    train_x: Inputs
    train_y: torch.Tensor
    test_x: Inputs
    test_y: torch.Tensor
    plan: BatchPlan
    weights: torch.Tensor | None
    source: str
    classes: list[str] | None = None
    val_x: Inputs | None = None
    val_y: torch.Tensor | None = None
    shard: tuple[int, int] | None = None
    ood_x: Any = field(default=None)

    def train_batch(self, b: int, generator: torch.Generator | None = None):
        idx = self.plan.indices(b)
        idx = idx[shard_rows(self.shard, len(idx))].to(self.device)
        w = self.weights[:, idx] if self.weights is not None else None
        return model_view(take(self.train_x, idx)), self.train_y[idx], w

    def split_size(self, split: str) -> int:
        xs = {"train": self.train_x, "test": self.test_x, "val": self.val_x, "ood": None}[split]
        return 0 if xs is None else _rows(xs)

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[Inputs, torch.Tensor]]:
        xs, ys = {
            "test": (self.test_x, self.test_y),
            "train": (self.train_x, self.train_y),
            "val": (self.val_x, self.val_y),
            "ood": (None, None),
        }[split]
        if xs is None or ys is None:
            return
        for i in range(0, len(ys), batch_size):
            yield model_view(take(xs, slice(i, i + batch_size))), ys[i : i + batch_size]

    def example_input(self) -> Inputs:
        return to_device(model_view(take(self.train_x, slice(0, 1))), torch.device("cpu"))

    def input_spec(self) -> dict:
        return input_spec(self.train_x)

    def task_targets(self) -> torch.Tensor:
        return self.train_y

    def target_shape(self) -> tuple[int, ...]:
        return tuple(self.train_y.shape[1:])


def _subset(x: Inputs, y: torch.Tensor, rows: torch.Tensor) -> tuple[Inputs, torch.Tensor]:
    """Rows ``rows`` of a split (increasing positions: all of them when as many as the split has, and then
    no copy)."""
    return (x, y) if len(rows) == len(y) else (take(x, rows), y[rows])


def refuse_normalize(d: Any) -> None:
    """Refuse ``data.normalize`` mean_image or per_channel for inputs read as tensors, which reach the model
    as stored (uint8 as [0, 1] floats): training would silently ignore it. Training calls it, but for a
    resumed run that recorded the mode before null was the default (:mod:`mheads.train.resume_checks`: it
    trained on its inputs as stored); evaluation and prediction do not."""
    if d.normalize not in (None, "none"):
        raise ConfigError(
            f"data.normalize: got {d.normalize!r}; expected null or none for inputs read as tensors (a "
            "table, an .npz file, a mask folder, inputs that are not square images, any task but "
            "classification), which reach the model as stored, uint8 as [0, 1] floats; scale them yourself "
            "(a run folder that recorded it before null was the default resumes as it trained, unnormalized)"
        )


def refuse_image_settings(d: Any) -> None:
    """Refuse the ``data:`` settings that only image classification has (augmentation, class selection)."""
    for name, bad in (
        ("data.label_split", d.label_split is not None),
        ("data.classes", d.classes is not None),
        ("data.crop_padding", d.crop_padding != 0),
        ("data.flip", d.flip),
    ):
        if bad:
            raise ConfigError(
                f"{name}: got {getattr(d, name.split('.')[1])!r}; expected its default for "
                "inputs that are not square images (augmentation and class selection are "
                "image-classification settings)"
            )


def prepare_tensors(
    cfg: Config,
    device: torch.device,
    train,
    test=None,
    *,
    source: str = "python Datasets",
    classes: list[str] | None = None,
) -> TensorData:
    """Read a user's ``train`` (and ``test``; None: evaluate on ``train``) Datasets whole and build the
    batching state ``cfg`` asks for. ``train`` / ``test`` may also be ``(inputs, targets)`` tensors already
    stacked."""
    seed = cfg.train.seed
    refuse_image_settings(cfg.data)
    train_x, train_y = train if isinstance(train, tuple) else read_pairs(train, "train")
    test_x, test_y = (
        (train_x, train_y)
        if test is None
        else (test if isinstance(test, tuple) else read_pairs(test, "test"))
    )
    check_splits_alike((take(train_x, 0), train_y[0]), (take(test_x, 0), test_y[0]))
    labels = [y if class_targets(y) else None for y in (train_y, test_y)]
    rows = choose_rows(RowChoice.of(cfg.data), seed, len(train_y), len(test_y), *labels)
    if cfg.task.is_classification and classes is None:
        classes = count_classes(train_y[rows.train], test_y[rows.test], (rows.train, rows.test))
    val = None if rows.val is None else (take(train_x, rows.val), train_y[rows.val])
    train_x, train_y = _subset(train_x, train_y, rows.train)
    test_x, test_y = _subset(test_x, test_y, rows.test)
    return TensorData(
        device=device,
        train_x=to_device(train_x, device),
        train_y=train_y.to(device),
        test_x=to_device(test_x, device),
        test_y=test_y.to(device),
        plan=BatchPlan(len(rows.train), cfg.train.batch_size, seed),
        weights=bagging_weights(len(rows.train), cfg.model.members, seed, cfg.data.bagging, device),
        source=source,
        classes=classes,
        val_x=None if val is None else to_device(val[0], device),
        val_y=None if val is None else val[1].to(device),
    )
