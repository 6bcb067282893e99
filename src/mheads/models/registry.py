"""Model registry: every base network is a factory ``fn(num_classes, in_channels, image_size, **kw)``
returning an ``nn.Module`` that maps ``(B, in_channels, S, S)`` to ``(B, C)``.

The paper's families (CIFAR10-Quick, NiN, CaffeNet) are ``nn.Sequential`` of *named* layers, named as in the
paper (conv1, cccp1, pool2, fc6, ...) so TreeNet split points read as in its tables; the residual networks
(:mod:`mheads.models.resnet`) are ordinary modules with ``forward`` code, cut at module paths (``layer2.0``)
by the tree's torch.fx tracing. Adding an architecture is one file with one ``@register_model`` function.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from mheads.core.checks import check_int

ModelFn = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of a base network besides how to build it.

    default_image_size: the input side the network was designed for (``create_model``'s default).
    min_image_size: the smallest square input that still leaves a spatial output.
    small_options: family options for a cheap instance of the same layout (quick checks and tests).
    """

    fn: ModelFn
    default_image_size: int
    min_image_size: int
    small_options: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelInfo] = {}


class UnknownModelError(ValueError):
    """Raised for a model name that is not registered."""


def register_model(
    name: str, *, image_size: int, min_image_size: int, small_options: dict | None = None
) -> Callable[[ModelFn], ModelFn]:
    """Decorator registering ``fn(num_classes, in_channels, image_size, **kw) -> nn.Module`` with its
    default and minimum input sizes (tests and ``list-models`` then cover a new model with no other
    change)."""
    check_int("image_size", image_size, 1)
    check_int("min_image_size", min_image_size, 1, image_size)

    def deco(fn: ModelFn) -> ModelFn:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(fn, image_size, min_image_size, dict(small_options or {}))
        return fn

    return deco


def list_models() -> list[str]:
    """Names of all registered base networks, sorted."""
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """The registry's :class:`ModelInfo` for ``name`` (unknown names suggest the closest registered one)."""
    return _check_name(name)


def is_import_path(name: object) -> bool:
    """``"package.module:function"``: a model built by user code rather than a registered family."""
    return isinstance(name, str) and name.count(":") == 1 and all(name.partition(":")[::2])


def import_model(name: str) -> Callable[..., nn.Module]:
    """The callable an import path names (``"my_package.nets:resnet_small"``)."""
    module_name, _, attr = name.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as err:
        # The console script searches the installed packages, not the current folder (python -m would).
        hint = (
            "; its folder must be on the import path: PYTHONPATH=. when it is in the current folder"
            if isinstance(err, ModuleNotFoundError) and err.name == module_name.split(".")[0]
            else ""
        )
        raise UnknownModelError(f"model: cannot import {module_name!r} for {name!r} ({err}{hint})") from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise UnknownModelError(
            f"model: {name!r} names no callable; expected 'package.module:function' returning an nn.Module"
        )
    return obj


def _create_imported(name: str, sizes: dict, kwargs: dict) -> nn.Module:
    fn = import_model(name)
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(fn).parameters
        takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):  # builtins without a signature
        params, takes_all = {}, False
    # The data's sizes go to the function only where it takes them: user code need not know mheads.
    given = {k: v for k, v in sizes.items() if v is not None and (takes_all or k in params)}
    net = fn(**given, **kwargs)
    if not isinstance(net, nn.Module):
        raise ValueError(f"model: {name!r} returned {type(net).__name__}; expected an nn.Module")
    return net


def _check_name(name: str) -> ModelInfo:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownModelError(
            f"model: unknown name {name!r}{hint}; registered models are: {', '.join(list_models())}"
        )
    return _REGISTRY[name]


def create_model(
    name: str, num_classes: int = 10, in_channels: int = 3, image_size: int | None = None, **kwargs
) -> nn.Module:
    """Build one registered base network.

    Args:
        name: a name from :func:`list_models`.
        num_classes: C, the width of the last layer.
        in_channels: image channels (3 for CIFAR, 1 for Fashion-MNIST).
        image_size: square input side (default: the model's own); the fully connected layers are sized for it.
        **kwargs: family-specific options (e.g. ``width`` for NiN/CaffeNet).
    Returns:
        an ``nn.Module`` mapping ``(B, in_channels, S, S)`` to ``(B, C)``: an ``nn.Sequential`` of named
        layers for the paper's families, a module with its own ``forward`` for the ResNets.
    """
    if is_import_path(name):
        sizes = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
        return _create_imported(name, sizes, kwargs)
    info = _check_name(name)
    image_size = info.default_image_size if image_size is None else image_size
    for field_name, value, low in (
        ("num_classes", num_classes, 1),
        ("in_channels", in_channels, 1),
        ("image_size", image_size, 1),
    ):
        check_int(field_name, value, low)
    return info.fn(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs)


def model_factory(name: str, **kwargs) -> Callable[[], nn.Module]:
    """A zero-argument factory for :class:`~mheads.tree.treenet.TreeNet` (validates the name at once)."""
    if is_import_path(name):
        import_model(name)
    else:
        _check_name(name)
    return lambda: create_model(name, **kwargs)


def flat_features(features: nn.Module, in_channels: int, image_size: int) -> int:
    """Number of features ``features`` produces for one image, found by a dry run on zeros (in eval mode, so
    no BatchNorm statistics move and no dropout draws: nothing trains before training starts)."""
    modes = {m: m.training for m in features.modules()}
    features.eval()
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, in_channels, image_size, image_size))
    except RuntimeError as err:
        raise ValueError(f"image_size: {image_size} is too small for this network ({err})") from None
    finally:
        for m, training in modes.items():
            m.training = training
    if out.numel() == 0:
        raise ValueError(f"image_size: {image_size} is too small for this network (no spatial output left)")
    return out.numel()


def parameterized_layers(net: nn.Module) -> list[str]:
    """Names of the direct children of ``net`` that own parameters: its top-level split points (the paper's
    layers for a Sequential family; a TreeNet also cuts deeper: :func:`mheads.tree.split_points`)."""
    return [n for n, m in net.named_children() if any(True for _ in m.parameters())]
