"""The task a run trains on inputs of any shape (issue 32): built from ``cfg.task`` with the sizes the data
shows, or the user's own :class:`~mheads.tasks.Task`, and checked against what the model outputs before the
first step."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from mheads.config import Config, ConfigError, build_task
from mheads.config.task import PYTHON_TASK
from mheads.data.errors import DataError
from mheads.data.from_torch import _SPARE_CLASSES
from mheads.tasks import Task

__all__ = ["check_image_classes", "check_outputs_fit", "run_task", "uint8_ids_named"]


def run_task(cfg: Config, data, task: Task | None = None) -> Task:
    """The run's Task: ``task`` (a user's, ``task.name: python``), or ``cfg.task`` built with the sizes left
    null filled in from the training targets (and written back into ``cfg.task``, so the run's config and
    meta record them): a regression or multi_hypothesis target's dimension D, a segmentation's classes."""
    tc = cfg.task
    if task is not None:
        return task
    if tc.name == PYTHON_TASK:
        raise ConfigError(
            "task.name: got 'python'; a user's task is not rebuilt from a config: pass the "
            "Task object (mheads.fit(..., task=...))"
        )
    y = data.task_targets()  # resident: every training target; streamed: the first
    if tc.name in ("regression", "multi_hypothesis"):
        if not y.is_floating_point() or y.ndim > 2:
            raise DataError(
                f"train: targets {y.dtype} of shape {tuple(y.shape)}; task {tc.name} expects "
                "float targets (N,) or (N, D)"
            )
        dim = int(y.shape[1]) if y.ndim == 2 else 1
        if tc.dim is not None and tc.dim != dim:
            raise ConfigError(f"task.dim: got {tc.dim}; the training targets have D = {dim}")
        tc.dim = dim
    if tc.name == "segmentation":
        _mask_classes(tc, y, getattr(data, "test_y", None))
    return build_task(tc, num_classes=data.num_classes or None, label_smoothing=cfg.loss.label_smoothing)


def _mask_classes(tc, y: torch.Tensor, test: torch.Tensor | None) -> None:
    """Segmentation's class count: ``task.num_classes``, or counted from the training masks (the largest
    labelled value plus one, refused where most of those classes would have no pixel, as classification's
    labels are: one stray pixel of 128 would silently make a 129-class task); then every mask checked."""
    if y.is_floating_point() or y.ndim != 3:
        raise DataError(
            f"train: targets {y.dtype} of shape {tuple(y.shape)}; segmentation expects integer masks "
            "(N, H, W)"
        )
    if tc.num_classes is None:
        values = y[y != tc.ignore_index].unique()
        tc.num_classes = int(values.max()) + 1 if values.numel() else 1
        if tc.num_classes - len(values) > max(len(values), _SPARE_CLASSES):
            raise DataError(
                f"train masks: value {tc.num_classes - 1} would make a {tc.num_classes}-class task, but the "
                f"masks take only {len(values)} distinct values other than task.ignore_index "
                f"{tc.ignore_index}; fix the stray pixels, or set task.num_classes (or task.ignore_index)"
            )
    for split, masks in (("train", y), ("test", test)):
        _check_mask_classes(split, masks, tc.num_classes, tc.ignore_index)


def _check_mask_classes(split: str, masks: torch.Tensor | None, classes: int, ignore: int) -> None:
    """Every pixel of the masks ``(N, H, W)`` a class 0..classes-1 or ``ignore``: one line before training
    (a stray value stopped the first step, or the first evaluation, without saying where it came from)."""
    if masks is None or masks.is_floating_point() or masks.ndim != 3:
        return
    bad = (masks != ignore) & ((masks < 0) | (masks >= classes))
    if bool(bad.any()):
        n, r, c = (int(v) for v in bad.nonzero()[0])
        images = int(bad.flatten(1).any(1).sum())
        raise DataError(
            f"{split} masks: {images} of {len(masks)} hold a class outside 0..{classes - 1} (the first: "
            f"{int(masks[n, r, c])} at pixel ({r}, {c})); expected 0..{classes - 1} (task.num_classes "
            f"{classes}) or task.ignore_index {ignore}"
        )


@torch.no_grad()
def check_outputs_fit(tree, data, task: Task) -> None:
    """Run the first training example through the tree (eval mode) and check its outputs against the task:
    a model whose head does not match (a Gaussian head needs 2D outputs, multiple hypotheses D + 1) is
    refused in one line before training."""
    was = tree.training
    tree.eval()
    example = data.example_input()
    try:
        with uint8_ids_named(data):
            outputs = tree(example)
    except (TypeError, AttributeError) as err:  # what a dict where tensors are expected raises
        if isinstance(example, dict):  # a Hugging Face model takes the dict's entries as keyword arguments
            raise ConfigError(_dict_call_error(example, err)) from err
        raise  # any other failure of the user's forward (a bug in it) keeps its own type and traceback
    finally:
        tree.train(was)
    target = data.task_targets()[:1].cpu()
    if not isinstance(outputs, torch.Tensor):
        raise ConfigError(
            f"model: its members output {type(outputs).__name__}; expected a tensor per member "
            "(name the prediction of a dict or tuple output with model.output)"
        )
    if task.name == "segmentation":
        _check_mask_size(outputs, target)
    try:
        task.check(outputs.float(), target)
    except ValueError as err:
        width = getattr(task, "head_width", None)
        try:
            want = f" ({task.head_width()} outputs per example)" if width is not None else ""
        except ValueError:
            want = ""
        raise ConfigError(
            f"model: members output shape {tuple(outputs.shape)} for one example, which task "
            f"{task.name!r} refuses{want}: {err}{_class_hint(task)} (a base that outputs features: set "
            "model.head task)"
        ) from None


def _check_mask_size(outputs: torch.Tensor, target: torch.Tensor) -> None:
    """Masks ``(1, h, w)`` of another size than the model's maps ``(M, 1, C, H, W)``: named as the masks'
    fault, without check_outputs_fit's advice on heads (which would mislead: the model's maps are fine)."""
    if outputs.ndim != 5 or target.ndim != 3 or tuple(outputs.shape[3:]) == tuple(target.shape[1:]):
        return
    (mh, mw), (oh, ow) = target.shape[1:], outputs.shape[3:]
    raise DataError(
        f"train masks: {mh}x{mw} (H x W) but the model's output maps are {oh}x{ow} for the first image; "
        "expected masks the size of the output maps (resize or crop the masks)"
    )


def _dict_call_error(example: dict, err: Exception) -> str:
    said = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
    return (
        f"model: its forward failed on the first example, a dict of {sorted(example)} ({type(err).__name__}: "
        f"{said}); the model is called with the dict as its one argument: a model that takes its entries as "
        "keyword arguments (Hugging Face's) needs a module whose forward(batch) returns model(**batch)"
    )


# torch's refusal of float indices by nn.Embedding / nn.EmbeddingBag (F.embedding, F.embedding_bag):
# "Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got
# torch.FloatTensor instead (while checking arguments for embedding)"
_FLOAT_INDICES = re.compile(
    r"Expected tensor for argument #1 'indices' to have one of the following scalar types: .*; but got "
    r"torch\.(Float|Double|Half|BFloat16)Tensor instead \(while checking arguments for embedding"
)


@contextmanager
def uint8_ids_named(data) -> Iterator[None]:
    """Around the first forwards of the model on ``data``'s example (the TreeNet's construction check, then
    :func:`check_outputs_fit`): an embedding's float-indices error on an input stored as uint8 becomes the
    one line of :func:`_uint8_error`; any other RuntimeError (the user's own bug, a dtype one included)
    keeps torch's error and traceback, untouched."""
    try:
        yield
    except RuntimeError as err:  # an nn.Embedding refusing what the one uint8 rule scaled as pixels
        found = _uint8_error(data.input_spec(), data.example_input(), err)
        if found is None:
            raise
        raise found from err


def _uint8_error(spec: dict, example, err: RuntimeError) -> DataError | None:
    """torch's float-indices error of an embedding (``_FLOAT_INDICES``) where the model's forward got an
    entry stored as uint8 (pixels, which ``example``, the input as the model saw it, holds scaled to [0, 1]
    floats), in one line naming the entry; None for any other error, a dtype bug of the model's own
    included (torch's own error is then raised)."""
    entries = spec.get("dict") or {"input": spec}
    seen = example if isinstance(example, dict) else {"input": example}
    uint8 = [
        k
        for k, v in entries.items()
        if isinstance(v, dict)
        and v.get("dtype") == "uint8"
        and isinstance(seen.get(k), torch.Tensor)
        and seen[k].is_floating_point()
    ]
    got = _FLOAT_INDICES.search(str(err))
    if not uint8 or got is None:
        return None
    name = f"input {uint8[0]!r}" if "dict" in spec else "the input"
    return DataError(
        f"{name}: uint8, which mheads reads as pixels and gives the model as [0, 1] floats, "
        f"and its embedding refused those floats as indices (torch.{got.group(1)}Tensor, not Long or Int); "
        "give token ids, masks and codes as int64 (or int32), or pixels as floats"
    )


def _class_hint(task: Task) -> str:
    """Where classification's class count comes from: a stray label (10 of 10 classes) adds a class."""
    classes = getattr(task, "num_classes", None)
    if task.name == "segmentation" and classes is not None:
        return (
            " (task.num_classes, or when null the largest mask value other than task.ignore_index, plus "
            f"one: {classes})"
        )
    if task.name != "classification" or classes is None:
        return ""
    return f" (counted from the labels: the largest class index in train and test is {classes - 1})"


@torch.no_grad()
def check_image_classes(tree, data) -> None:
    """A user's model on images of a class-labelled set: its members must output one score per class of the
    data (``data.num_classes``: the folder's classes, or the largest label plus one), checked by one eval-mode
    forward of a blank image, so that a mismatch is one line before training, not a failed first step."""
    was = tree.training
    tree.eval()
    try:
        device = next(iter(tree.parameters()), torch.zeros(())).device
        outputs = tree(torch.zeros(1, data.in_channels, data.image_size, data.image_size, device=device))
    finally:
        tree.train(was)
    classes = data.num_classes
    if not isinstance(outputs, torch.Tensor) or outputs.ndim != 3 or outputs.shape[-1] != classes:
        shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        raise ConfigError(
            f"model: members output {shape} for one image; expected (M, 1, {classes}): one score per class; "
            f"the data has {classes} classes (the folder's, or the largest label plus one: a label out of "
            "range adds classes) (a model that outputs features: set model.head task)"
        )
