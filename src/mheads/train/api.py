"""The Python training API: ``mheads.fit(model, train, test, out=..., settings=...)`` -> :class:`FitResult`.

It trains a TreeNet (or any module, wrapped as an M-member ensemble) on the user's own data and writes the
same run folder as ``mheads train``: everything the command line does (resume, checkpoints, evaluation,
bagging, every loss) goes through the same loop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch
from torch import nn

from mheads.config import Config, ConfigError
from mheads.config.schema import PYTHON_MODEL
from mheads.data.tensor_data import AnyShapeData
from mheads.models import is_import_path
from mheads.tasks import Classification, Task
from mheads.train import loop
from mheads.train.device import resolve_device
from mheads.train.fit_inputs import fit_data, from_loader, run_config
from mheads.train.resources import check_model_size
from mheads.train.result import FitResult
from mheads.train.run_model import load_run
from mheads.train.task_head import head_base
from mheads.train.task_run import run_task
from mheads.tree import TreeNet

if TYPE_CHECKING:
    from mheads.data.dataset import Dataset
    from mheads.data.loader import TorchData

__all__ = ["FitResult", "fit"]


def _check_trainable(module: nn.Module, what: str) -> None:
    if not any(p.requires_grad for p in module.parameters()):
        raise ConfigError(
            f"model: {what} has no trainable parameters; expected a module with parameters to "
            "train (nn.Conv2d, nn.Linear, ...), not a fixed function"
        )


def _tree(
    model: nn.Module | TreeNet | Callable[[], nn.Module], cfg: Config, data, task: Task | None
) -> TreeNet:
    """The run's TreeNet from the user's ``model`` and the prepared ``data``; with ``model.head: task``,
    ``model`` under the task's head, each member its own (:mod:`mheads.train.task_head`)."""
    m = cfg.model
    if not isinstance(model, nn.Module):  # a factory: its network sized on the meta device before M are built
        name = getattr(model, "__name__", type(model).__name__)
        sized = check_model_size(cfg, model, resolve_device(cfg.train.device), what=name) is not None
        if sized and m.head == "none":  # under a task head a frozen base is fine: the heads train
            with torch.device("meta"):
                _check_trainable(model(), f"the network {name} builds")
    if isinstance(model, TreeNet):
        return _given_tree(model, cfg)
    example, probe = _examples(data)
    base, split, reinit, output = model, m.split, m.reinit, m.output
    if m.head == "task":
        base, split, reinit = head_base(model, cfg, _head_task(cfg, data, task), probe)
        output = None  # the head reads model.output
    tree = TreeNet(
        base,
        m.members,
        split,
        seed=cfg.train.seed,
        init=m.init,
        reinit=reinit,
        example_input=example,
        scoring_heads=m.scoring_heads,
        output=output,
    )
    tree.exec_mode = m.exec
    return tree


def _given_tree(tree: TreeNet, cfg: Config) -> TreeNet:
    """A TreeNet given to fit, as it is; the config records what it trains."""
    m = cfg.model
    if m.head != "none":
        raise ConfigError(
            f"model.head: got {m.head!r} with a TreeNet, which is trained as built; give its base network "
            "(an nn.Module or a factory) for the task's head on every member, or model.head none"
        )
    if m.members != tree.num_members:
        m.members = tree.num_members  # the TreeNet given decides; the run records what it trains
    split = tree.split
    m.split = split if split is None or isinstance(split, (str, list)) else [list(s) for s in split]
    if m.output is not None and m.output != tree.output:
        raise ConfigError(
            f"model.output: got {m.output!r}; expected {tree.output!r}, the output= of "
            "the TreeNet given (or leave model.output unset)"
        )
    m.output = tree.output  # recorded in run.json, so load_run rebuilds the same selection
    return tree


def _examples(data) -> tuple[Any, Any]:
    """``(example, probe)``: what the TreeNet checks its cut on (a batch, its shape, or None for a dict input:
    not probed) and a batch to find the features of a task head on."""
    if isinstance(data, AnyShapeData):  # inputs of any shape: the first one
        probe = data.example_input()
        return (probe if isinstance(probe, torch.Tensor) else None), probe
    shape = (data.in_channels, data.image_size, data.image_size)
    return (1, *shape), torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))


def _head_task(cfg: Config, data, task: Task | None) -> Task:
    """The task whose head goes on the base: the run's (built from ``cfg.task`` and the data, as the loop
    builds it), or classification of the images' classes."""
    if isinstance(data, AnyShapeData):
        return run_task(cfg, data, task)
    return Classification(data.num_classes)


def fit(
    model: nn.Module | TreeNet | Callable[[], nn.Module] | str,
    train: Any = None,
    test: Any = None,
    *,
    out: str | os.PathLike,
    settings: Mapping[str, Any] | Config | None = None,
    task: str | Task | None = None,
    head: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
) -> FitResult:
    """Train an ensemble and write the run folder ``out``; returns a :class:`FitResult`: the trained TreeNet
    (``.tree``, eval mode), the final metrics (``.metrics``, also readable as ``result["oracle_acc"]``) and
    the run folder (``.run``).

    Args:
        model: a :class:`TreeNet`; any ``nn.Module`` or a zero-argument factory, wrapped as ``model.members``
            members split at ``model.split`` (None: independent members, each running the module's own
            ``forward``; a module path such as ``"layer2"``: a shared trunk) and initialized per
            ``model.init`` (``"pretrained"`` keeps the module's weights in every member); or a registered
            model name or an import path ``"package.module:function"``, built as the command line builds it.
            A base whose ``forward`` returns a dict or tuple names its prediction with ``model.output``.
        train, test: map-style ``torch.utils.data.Dataset`` s of ``(image, label)`` (uint8 or [0, 1] float
            images; one shape, or any sizes when streamed at ``data.image_size``; ``test=None`` evaluates on
            ``train``), or ``DataLoader`` s over them, or a data path the command line reads (its own train
            and test splits), or None for the embedded Fashion-MNIST subset. From a ``DataLoader`` fit takes
            its dataset and its ``batch_size`` (``train.batch_size``; a test loader's:
            ``train.eval_batch_size``) unless ``settings`` name that key (a ``Config`` names every key, so
            its own batch sizes apply); it ignores the loader's sampler and shuffle (mheads' own seeded
            batch plan is what makes resume exact), collate_fn, workers and drop_last, and logs what it took.
        out: the run folder (written as ``mheads train --out`` writes it).
        settings: dotted config keys, as ``--set`` takes them: ``{"loss.name": "mcl", "loss.k": 1,
            "train.iterations": 300}``; or a :class:`mheads.Config` (copied: fit never changes yours).
        task: what the members' outputs mean (docs/tasks.md): None (``settings``' ``task.name``, default
            classification), a name ("classification", "regression", "multi_hypothesis", "segmentation";
            its options as ``task.*`` settings), or a :class:`mheads.tasks.Task` (a built-in one is recorded
            in the run by name and options; a user's task, e.g. ``mheads.tasks.custom_task(loss_fn)``,
            reopens from Python only, with ``task=`` passed again). For any task but classification of square
            images, ``train`` and ``test`` hold ``(input, target)`` pairs of any shape: features ``(F,)``,
            sequences ``(C, T)``, images ``(C, H, W)`` of any size, dicts of tensors; targets class indices,
            float vectors or masks (read whole onto the device).
        head: ``"task"`` puts the task's head on top of every member (each member its own: a linear layer on
            the base's features ``(B, F)``, a 1x1 convolution on ``(B, F, H, W)`` maps for segmentation), so
            ``model`` may be any feature extractor; ``"none"`` (the default, ``settings``' ``model.head``):
            the model's output is the prediction. ``model.pool`` says how a sequence ``(B, T, F)`` or maps
            become features, ``model.output`` which output of a dict or tuple the head reads;
            ``model.split: "output"`` shares the whole model as one trunk, run untraced (a Hugging Face model
            too), the members being the heads.
        resume: continue the run in ``out`` from its newest checkpoint, exactly.
        overwrite: replace a run already in ``out``.
        progress: show a progress bar (default: when stderr is a terminal).

    The process is left as found: the global random state (fit seeds its own, forked, generator: dropout
    draws from it), ``torch.get_num_threads()`` and glibc's malloc settings (``mheads train`` raises its
    thresholds for CPU speed; call ``mheads.train.allocator.retain_freed_memory()`` to do so here).
    """
    cfg, named, user_task = run_config(settings, task, head)
    _check_model(model, cfg)
    dataset = _read_data(train, test, cfg, named)
    return _train(model, cfg, dataset, user_task, Path(out), resume, overwrite, progress)


def _read_data(train: Any, test: Any, cfg: Config, named: set[str] | None) -> Dataset | TorchData | None:
    """The data the loop trains on: a ``DataLoader`` unwrapped to its dataset (its batch size taken unless
    ``named`` holds that key), then prepared as :func:`mheads.train.fit_inputs.fit_data` prepares it."""
    return fit_data(cfg, from_loader("train", train, cfg, named), from_loader("test", test, cfg, named))


def _train(
    model: Any,
    cfg: Config,
    dataset: Dataset | TorchData | None,
    user_task: Task | None,
    out: Path,
    resume: bool,
    overwrite: bool,
    progress: bool | None,
) -> FitResult:
    """Train through the loop that ``mheads train`` runs; the result holds the tree the loop built (a model
    named by string: rebuilt from its run folder, as a user reopens it)."""
    built: list[TreeNet] = []  # the tree the loop trained (a model named by string: none)
    metrics = loop.fit(
        cfg,
        out,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        model=_builder(model, cfg, user_task, built),
        dataset=dataset,
        retain_memory=False,
        task=user_task,
    )
    assert metrics is not None  # one process, the root: fit returns its metrics
    tree = built[-1] if built or not isinstance(model, str) else _reopened(model, cfg, out)
    return FitResult(tree.eval(), out, metrics)


def _check_model(model: Any, cfg: Config) -> None:
    """Refuse a ``model`` fit cannot train, before the data is read; a model named by string goes into
    ``cfg.model.name``."""
    if not isinstance(model, (str, nn.Module)) and not callable(model):
        raise ConfigError(
            f"model: got {type(model).__name__}; expected an nn.Module, a TreeNet, a "
            "zero-argument function returning an nn.Module, or a registered model name"
        )
    if isinstance(model, nn.Module) and cfg.model.head == "none":  # a head trains on a frozen base
        _check_trainable(model, type(model).__name__)
    if isinstance(model, str):
        cfg.model.name = model
        cfg.validate()


def _builder(model: Any, cfg: Config, user_task: Task | None, built: list[TreeNet]):
    """What the loop builds the tree with, once the data (and so the input shape) is known: a function of the
    prepared data appending the tree it builds to ``built``; None for a model named by string (the loop
    builds it from ``cfg.model``)."""
    if isinstance(model, str):
        return None
    cfg.model.name = PYTHON_MODEL

    def build(data) -> TreeNet:
        built.append(_tree(model, cfg, data, user_task))
        return built[-1]

    return build


def _reopened(model: str, cfg: Config, out: Path) -> TreeNet:
    """A model named by string, rebuilt from its run folder as a user would reopen it, on the run's device."""
    with torch.random.fork_rng(devices=[]):
        tree = load_run(out, model=model if is_import_path(model) else None)
    return tree.to(resolve_device(cfg.train.device))
