"""The task's head on top of a user's base network (``model.head: task``, issue 32): every member gets its own
head (:mod:`mheads.tasks.heads`), so the head is never part of a shared trunk.

The head reads the base's features: its output, chosen by ``model.output`` and pooled by ``model.pool``.
Their width F is found by one eval-mode forward of an example batch (``model.head_in``, if given, is checked
against it) and written back, so the run's config and ``run.json`` record it. A run records the head as data
(``meta["head"]``: the layer, F and the pool; its width is ``meta["num_classes"]``), so a reopened run
rebuilds it from ``run.json`` alone, on the model the user names. The base's module paths move under
``base.``: ``model.split`` and ``model.reinit`` name the base's own paths and are translated here;
``model.split: output`` shares the whole base (run as a black box, never traced) and branches at the heads,
recorded in ``meta["split"]`` as ``output`` like any other split and as ``meta["head"]["whole_base"]: true``,
so that a reopened run reads the choice it was trained with (a run folder without the record: the whole base).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from mheads.config import Config, ConfigError
from mheads.config.model_config import WHOLE_BASE
from mheads.core.checks import is_int
from mheads.runs.checkpoint import CheckpointError
from mheads.tasks import Segmentation, Task
from mheads.tasks.heads import LAYERS, POOLS, HeadedBase, HeadLayout, feature_shape, head_features
from mheads.train.reopen import MAX_SIZES

__all__ = ["head_base", "head_from_meta", "head_meta", "headed_split", "task_head_layer"]

Base = nn.Module | Callable[[], nn.Module]


def task_head_layer(task_name: str) -> str:
    """The head layer of the task recorded as ``task_name``: a 1x1 convolution for segmentation, else linear
    (a user's task included)."""
    return Segmentation.head_layer if task_name == Segmentation.name else Task.head_layer


def headed_split(split: Any) -> Any:
    """``model.split`` (the base's own module paths) as paths of the :class:`HeadedBase` that wraps it;
    ``output`` (:data:`WHOLE_BASE`, after the base's output) as the cut the headed base offers without
    tracing: its whole ``base`` the shared trunk, a head per member (:mod:`mheads.tree.parts`)."""
    if split is None:
        return None
    if split == WHOLE_BASE:
        return HeadedBase.untraced_cut
    if isinstance(split, str):
        return f"base.{split}"
    return [(f"base.{name}", n) for name, n in split]


def head_base(model: Base, cfg: Config, task: Task, example: Any) -> tuple[Base, Any, list[str]]:
    """``(base, split, reinit)`` for the TreeNet of a run with ``model.head: task``: ``model`` (a module or a
    factory) under the task's head, and ``model.split`` / ``model.reinit`` translated to its paths (with
    ``model.init: pretrained`` each member redraws its head: it has no pretrained weights). F is found by one
    eval-mode forward of ``example`` (a ``model.head_in`` given is checked against it) and written into
    ``model.head_in``."""
    m = cfg.model
    layer = task_head_layer(cfg.task.name)
    if task.head_layer != layer:
        raise ConfigError(
            f"model.head: task {task.name!r} asks for a {task.head_layer!r} head; a head on any base is "
            f"{layer!r} for this task (give a base that outputs the predictions, model.head none)"
        )
    probe = model if isinstance(model, nn.Module) else _built(model)
    try:
        features = head_features(layer, feature_shape(probe, example, m.output, m.pool), m.pool)
    except ValueError as err:
        raise ConfigError(f"model.{err}") from None
    if m.head_in is not None and m.head_in != features:
        raise ConfigError(
            f"model.head_in: got {m.head_in}; the base's output gives F = {features} features (or leave "
            "model.head_in null)"
        )
    m.head_in = features
    try:
        layout = task.head_layout(m.head_in)
    except ValueError as err:
        raise ConfigError(f"model.{err}") from None
    reinit = [f"base.{path}" for path in m.reinit] + (["head"] if m.init == "pretrained" else [])
    return attach(model, layout, m.output, m.pool, cfg.train.seed), headed_split(m.split), reinit


def attach(model: Base, layout: HeadLayout, output: str | int | None, pool: str, seed: int) -> Base:
    """``model`` under a head of ``layout``: a module's head drawn under ``seed`` (members redraw it per their
    own seeds as they redraw the base); a factory's drawn by each member's build, after its base."""
    if isinstance(model, nn.Module):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return HeadedBase(model, layout.build(), output, pool)
    return lambda: HeadedBase(_built(model), layout.build(), output, pool)


def _built(factory: Callable[[], nn.Module]) -> nn.Module:
    """What ``factory`` builds, checked (the global random state untouched by the probe's build)."""
    with torch.random.fork_rng(devices=[]):
        net = factory()
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model: the factory returned {type(net).__name__}; expected an nn.Module")
    return net


def head_meta(cfg: Config) -> dict:
    """What ``run.json``'s ``meta`` records of the head (``meta["head"]``); ``whole_base: true`` where
    ``model.split: output`` is the whole base shared (recorded only then: other runs' meta is unchanged)."""
    m = cfg.model
    meta = {"features": m.head_in, "layer": task_head_layer(cfg.task.name), "pool": m.pool}
    if m.split == WHOLE_BASE:
        meta["whole_base"] = True
    return meta


def head_from_meta(base: Base, meta: dict, split: Any, where: str) -> tuple[Base, Any]:
    """``(base, split)`` of a reopened run whose ``meta`` records a head: ``base`` (the model the user names)
    under the recorded head (its weights come from the run), ``split`` translated. A head description that is
    not one (edited or damaged) raises ``CheckpointError`` naming ``where`` and the field."""
    head = meta["head"]
    allowed = {
        "features": f"an integer in 1..{MAX_SIZES['num_classes']}",
        "layer": f"one of {', '.join(LAYERS)}",
        "pool": f"one of {', '.join(POOLS)}",
    }
    ok = {
        "features": lambda v: is_int(v) and 1 <= v <= MAX_SIZES["num_classes"],
        "layer": lambda v: v in LAYERS,
        "pool": lambda v: v in POOLS,
    }
    for key, check in ok.items():
        value = head.get(key) if isinstance(head, dict) else None
        if not check(value):
            raise CheckpointError(
                f"{where}: the model description does not build a model (head.{key}: got {value!r}; "
                f"expected {allowed[key]})"
            )
    layout = HeadLayout(head["layer"], head["features"], meta["num_classes"])
    return attach(base, layout, meta.get("output"), head["pool"], 0), _recorded_split(split, head, where)


def _recorded_split(split: Any, head: dict, where: str) -> Any:
    """``split`` translated as the run recorded it: ``head.whole_base`` true, the whole base shared; false, a
    layer of the base named ``output`` (a run split there before ``output`` meant the whole base, its
    run.json so marked); absent (a run folder from before the record), ``output`` is the whole base."""
    if "whole_base" not in head:
        return headed_split(split)
    whole = head["whole_base"]
    if not isinstance(whole, bool) or (whole and split != WHOLE_BASE):
        raise CheckpointError(
            f"{where}: the model description does not build a model (head.whole_base: got {whole!r}; "
            f"expected true or false, true only with split {WHOLE_BASE!r})"
        )
    if not whole and split == WHOLE_BASE:
        return f"base.{split}"  # the base's own layer, as every other layer name is translated
    return headed_split(split)
