"""Build the ensemble a config describes: a TreeNet over a registered base network, optionally
warm-started."""

from __future__ import annotations

import os
from typing import overload

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from mheads.config import Config, ConfigError
from mheads.config.schema import PYTHON_MODEL
from mheads.data import DataError
from mheads.data.tensors import spec_example
from mheads.models import UnknownModelError, is_import_path, model_factory
from mheads.runs.checkpoint import CheckpointError
from mheads.tasks import Classification, Task
from mheads.train.reopen import ModelSpec, base_factory, check_fits_memory, check_meta
from mheads.train.task_head import head_base, head_from_meta, head_meta
from mheads.tree.treenet import TreeNet


@overload
def input_sizes(spec: dict) -> tuple[int, int]: ...


@overload
def input_sizes(spec: None) -> None: ...


@overload
def input_sizes(spec: dict | None) -> tuple[int, int] | None: ...


def input_sizes(spec: dict | None) -> tuple[int, int] | None:
    """``(in_channels, image_size)`` a registered or import-path factory is called with for inputs of any
    shape (:func:`mheads.data.tensors.input_spec`): the first and last axis of one example (features
    ``(F,)``: F and F; a dict input: 1 and 1)."""
    if spec is None:
        return None
    shape = spec.get("shape") if isinstance(spec, dict) else None
    return (int(shape[0]), int(shape[-1])) if isinstance(shape, list) and shape else (1, 1)


def build_tree(
    cfg: Config, num_classes: int, in_channels: int, image_size: int, example=None, task: Task | None = None
) -> TreeNet:
    """The TreeNet for ``cfg.model`` sized for the data; errors name the config field at fault. ``example``:
    for inputs that are not square images, a batch of them (a tensor or a dict of tensors) to build on;
    ``num_classes`` is then the task's head width. ``task``: the run's task, whose head ``model.head: task``
    puts on every member (None: classification of ``num_classes`` classes)."""
    m = cfg.model
    check_scoring(cfg)
    _check_named_model(cfg)
    try:
        factory = model_factory(
            m.name, num_classes=num_classes, in_channels=in_channels, image_size=image_size, **m.options
        )
        first = factory()  # surfaces bad options / image sizes once, before copies are built
        base = factory if m.weights is None else _with_weights(first, m.weights)
        shape = (
            (1, in_channels, image_size, image_size)
            if example is None
            else (example if isinstance(example, torch.Tensor) else None)
        )
        split, reinit, output = m.split, m.reinit, m.output
        if m.head == "task":  # as mheads.fit heads a factory given to it (mheads.train.api)
            probe = _head_probe(in_channels, image_size) if example is None else example
            base, split, reinit = head_base(base, cfg, task or Classification(num_classes), probe)
            output = None  # the head reads model.output
        tree = TreeNet(
            base,
            m.members,
            split,
            seed=cfg.train.seed,
            init=m.init,
            reinit=reinit,
            example_input=shape,
            scoring_heads=m.scoring_heads,
            output=output,
        )
    except TypeError as err:  # an option the family does not take
        raise ConfigError(f"model.options: {err}") from None
    except UnknownModelError as err:  # an import path that does not import, or names no callable
        raise ConfigError(f"model.name: {str(err).removeprefix('model: ')}") from None
    except ValueError as err:
        msg = str(err)
        if msg.startswith("image_size:"):  # the data's images, not a config value, do not fit the network
            where = cfg.data.source if cfg.data.source is not None else "(the embedded data)"
            raise DataError(
                f"data.source {where}: {image_size}x{image_size} images do not fit model.name "
                f"{m.name!r}: {msg}; use larger images or another model"
            ) from None
        raise ConfigError(msg if msg.startswith("model.") else f"model.{msg}") from None
    tree.exec_mode = m.exec
    return tree


def _check_named_model(cfg: Config) -> None:
    """Refuse a ``model.name`` that names no model to build here: ``python`` (an object given to fit), or a
    registered model with ``model.head: task`` (the zoo's families end in their own classifier)."""
    m = cfg.model
    if m.name == PYTHON_MODEL:
        raise ConfigError(
            "model.name: 'python' names a model given to mheads.fit as a Python object; "
            "pass the model to mheads.fit (or name a registered model or an import path)"
        )
    if m.head != "none" and not is_import_path(m.name):
        raise ConfigError(
            f"model.head: got {m.head!r} with model.name {m.name!r}, a registered model, which ends in its "
            "own classifier; a task head goes on a base named by import path 'package.module:function' or "
            "given to mheads.fit as a Python object, or use model.head none"
        )


def _head_probe(in_channels: int, image_size: int) -> torch.Tensor:
    """The image batch a task head's F is found on, as mheads.fit draws it for images (a fixed seed)."""
    shape = (2, in_channels, image_size, image_size)
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def check_scoring(cfg: Config) -> None:
    """A scored loss needs ``model.scoring_heads`` (checked here too, as ``Config.validate`` checks the loss
    without the model); scoring heads need a model that builds them. Distributed runs (under torchrun,
    ``WORLD_SIZE`` > 1, as ``mheads train`` decides) place only the trunk and the branches, so they refuse the
    heads here, before any rank builds a model."""
    m = cfg.model
    cfg.loss.validate(m.members, model=m, task=cfg.task)
    if m.scoring_heads and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "model.scoring_heads: got True; expected false in a distributed run (its placement "
            "holds only the trunk and the branches, not the scoring heads)"
        )


def _with_weights(net: torch.nn.Module, path: str) -> torch.nn.Module:
    """``net`` with the weights of the safetensors file ``path`` (``model.weights``)."""
    try:
        state = load_file(path)
    except FileNotFoundError:
        raise ConfigError(f"model.weights: {path}: no such file") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise ConfigError(
            f"model.weights: {path}: not a readable safetensors file ({str(err).splitlines()[0]})"
        ) from None
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(
            f"model.weights: {path} does not fit model.name with these options "
            f"({' '.join(str(err).split())[:300]})"
        ) from None
    return net


def model_meta(
    cfg: Config, num_classes: int, in_channels: int, image_size: int, input_spec: dict | None = None
) -> dict:
    """What a checkpoint records to refuse resuming or evaluating with a different model. ``input_spec``:
    inputs that are not images, recorded as ``input`` (``in_channels`` and ``image_size`` are then 1); any
    task but classification is recorded as ``task`` (its name and options)."""
    split = cfg.model.split
    if isinstance(split, (list, tuple)):
        split = [list(level) for level in split]
    meta = {
        "architecture": cfg.model.name,
        "members": cfg.model.members,
        "split": split,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "image_size": image_size,
        "options": dict(cfg.model.options),
    }
    if cfg.model.scoring_heads:  # recorded only when on: the meta of a run without heads is unchanged
        meta["scoring_heads"] = True
    if cfg.model.output is not None:  # likewise: a base returning a dict or tuple (model.output)
        meta["output"] = cfg.model.output
    if input_spec is not None:  # likewise: inputs of any shape (mheads.data.tensors)
        meta["input"] = input_spec
    if not cfg.task.is_classification:
        meta["task"] = {"name": cfg.task.name, **cfg.task.options()}
    if cfg.model.head != "none":  # likewise: the task's head on every member (mheads.train.task_head)
        meta["head"] = head_meta(cfg)
    return meta


def tree_from_meta(meta: dict, seed: int = 0, where: str | None = None, model: ModelSpec = None) -> TreeNet:
    """Rebuild the TreeNet structure a checkpoint's meta describes (weights are loaded by the caller).

    A registered architecture is rebuilt from the registry; one given by import path or as a Python object is
    rebuilt only from ``model``, which the user names (see :mod:`mheads.train.reopen`: nothing a run
    folder names is imported or called). Every size is bounded, and the parameters counted on the meta device
    against the memory there is, before anything is allocated. A meta that does not describe a buildable
    model (edited, foreign or damaged: a missing key, an unknown architecture, ``members: 0``) raises
    ``CheckpointError`` naming ``where`` and the field."""
    where = where or "checkpoint"
    meta = check_meta(meta, where)
    split = meta["split"]
    if isinstance(split, list):
        split = [tuple(level) if isinstance(level, list) else level for level in split]
    try:
        spec = meta.get("input")
        example = None if spec is None else spec_example(spec, where)
        sizes = input_sizes(spec)
        sized = meta if sizes is None else {**meta, "in_channels": sizes[0], "image_size": sizes[1]}
        base = base_factory(sized, model, where)
        output = meta.get("output")  # checked by TreeNet: a key or an index
        if "head" in meta:  # the head reads the output: the TreeNet takes the headed base's prediction
            base, split = head_from_meta(base, meta, split, where)
            output = None
        check_fits_memory(base, meta["members"], where)
        shape = (
            (1, meta["in_channels"], meta["image_size"], meta["image_size"])
            if spec is None
            else (example if isinstance(example, torch.Tensor) else None)
        )
        user = model is not None and not isinstance(model, str)
        heads = bool(meta.get("scoring_heads", False))
        if not heads and not user:
            return TreeNet(base, meta["members"], split, seed=seed, output=output)
        # a user's module may need an example input to be cut (torch.fx); weights come from the run
        return TreeNet(
            base, meta["members"], split, seed=seed, scoring_heads=heads, example_input=shape, output=output
        )
    except CheckpointError:
        raise
    except (ValueError, TypeError) as err:
        raise CheckpointError(
            f"{where}: the model description does not build a model ({' '.join(str(err).split())[:300]})"
        ) from None


def warm_start(tree: TreeNet, saved: TreeNet, from_member: int | None) -> None:
    """Copy weights from a trained ``saved`` TreeNet: the whole tree (same layout), or one saved member into
    every member of ``tree`` (the paper's identical-members fine-tuning, Table 6)."""
    if from_member is None:
        state = saved.state_dict()
        if tree.scoring is None:  # from a run with scoring heads: drop them
            state = {k: v for k, v in state.items() if not k.startswith("scoring.")}
        elif saved.scoring is None:  # the new heads start from zero
            state.update({f"scoring.{k}": v for k, v in tree.scoring.state_dict().items()})
        try:
            tree.load_state_dict(state)
        except RuntimeError as err:
            raise ConfigError(
                "train.init_from: the saved weights do not fit this model "
                f"({str(err).splitlines()[0]}); use the same model.name, members and split, "
                "or set train.init_from_member"
            ) from None
        return
    if not 0 <= from_member < saved.num_members:
        raise ConfigError(f"train.init_from_member: got {from_member}; expected 0..{saved.num_members - 1}")
    member_state = saved.member(from_member).state_dict()
    for m in range(tree.num_members):
        try:
            tree.member(m).load_state_dict(member_state)
        except RuntimeError as err:
            raise ConfigError(
                f"train.init_from_member: member {from_member} does not fit this model "
                f"({str(err).splitlines()[0]})"
            ) from None
