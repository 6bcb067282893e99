"""The M copies of a base network a TreeNet is cut from, initialized per the ensembling strategy.

- ``independent`` (random initialization, the default): each member drawn from its own seed. With a factory,
  each member's copy is built under its seed, so the family's own initialization (e.g. Caffe's Gaussian
  fillers) is kept. With a module (an instance), every member, member 0 included, is a copy redrawn under its
  seed the way a constructor draws it, so all members come from one distribution: every layer with
  ``reset_parameters()`` is reset (children before their parents), a parameter of a layer without one is
  redrawn from a normal distribution with the mean and standard deviation of its current values (a constant,
  such as a zero bias or a layer scale, stays constant), and then the model's own scheme runs where it has
  one: ``model.init_weights()`` (timm, Hugging Face) if it takes no required argument. Where the model has no
  such method (torchvision's ResNet initializes inside ``__init__``), the layers get PyTorch's defaults, not
  the constructor's scheme: pass a factory (``lambda: resnet18(num_classes=10)``) to keep it.
- ``same``: every member starts from the same weights (the paper's Table 6).
- ``pretrained``: every member starts from the base's weights (a pretrained network), except the module paths
  in ``reinit`` (e.g. the classifier), which each member redraws from its own seed.
"""

from __future__ import annotations

import copy
import inspect
from typing import Callable, Sequence, Union

import torch
from torch import nn

__all__ = ["INIT_MODES", "BaseSpec", "build_members", "redraw"]

BaseSpec = Union[nn.Module, Callable[[], nn.Module]]
INIT_MODES = ("independent", "same", "pretrained")


def _build(base: BaseSpec) -> nn.Module:
    if isinstance(base, nn.Module):
        return copy.deepcopy(base)
    if not callable(base):
        raise ValueError(f"base: got {type(base).__name__}; expected an nn.Module or a factory")
    net = base()
    if not isinstance(net, nn.Module):
        raise ValueError(f"base: the factory returned {type(net).__name__}; expected an nn.Module")
    return net


def redraw(module: nn.Module, where: str = "base") -> None:
    """Redraw every parameter of ``module`` from the global generator (callers seed it):
    ``reset_parameters()`` where a layer has one (children first, so a parent's own scheme wins), else the
    moment-matched normal draw described in the module docstring."""
    for name, mod in reversed(list(module.named_modules())):
        if hasattr(mod, "reset_parameters"):
            mod.reset_parameters()
            continue
        for pname, p in mod.named_parameters(recurse=False):
            path = f"{where}.{name}.{pname}" if name else f"{where}.{pname}"
            if not p.is_floating_point() or not torch.isfinite(p).all():
                what = "has non-finite values" if p.is_floating_point() else f"is of dtype {p.dtype}"
                raise ValueError(
                    f"init: cannot redraw {path}: {type(mod).__name__} has no "
                    f"reset_parameters() and the parameter {what}; give a factory that builds "
                    "the base, add reset_parameters() to the layer, or use init='same' or "
                    "'pretrained'"
                )
            with torch.no_grad():
                if p.numel() > 1 and float(p.std()) > 0:
                    p.normal_(float(p.mean()), float(p.std()))


def _own_scheme(net: nn.Module) -> str | None:
    """The model's own ``init_weights()``, if it has one callable without arguments: called; its name."""
    fn = getattr(net, "init_weights", None)
    if not callable(fn):
        return None
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(
        p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        for p in params
    ):
        return None
    fn()
    return f"{type(net).__name__}.init_weights()"


def build_members(
    base: BaseSpec,
    seeds: Sequence[int],
    init: str = "independent",
    reinit: Sequence[str] = (),
    describe: bool = False,
):
    """One copy of the base per seed, initialized per ``init`` (see the module docstring). With
    ``describe``: ``(copies, how)``, ``how`` a sentence saying how the members were drawn."""
    if init not in INIT_MODES:
        raise ValueError(f"init: got {init!r}; expected one of {', '.join(INIT_MODES)}")
    if init == "same":
        seeds = [seeds[0]] * len(seeds)
    copies: list[nn.Module] = []
    built: dict[int, nn.Module] = {}
    how = {
        "independent": "each member built by the factory under its own seed",
        "same": "every member a copy of the first",
        "pretrained": "every member a copy of the base's weights",
    }[init]
    for m, s in enumerate(seeds):
        if init != "independent" and copies:
            net = copy.deepcopy(copies[0])
        elif s in built:  # identical seeds give identical weights: copy instead of rebuilding
            net = copy.deepcopy(built[s])
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                net = _build(base)
                if isinstance(base, nn.Module) and init == "independent":
                    redraw(net)
                    scheme = _own_scheme(net)
                    how = (
                        "each member a copy of the instance redrawn under its own seed: "
                        "reset_parameters() per layer, a moment-matched normal draw for other parameters, "
                        f"then {scheme or 'nothing more (no init_weights(): PyTorch defaults)'}"
                    )
            built[s] = net
        copies.append(net)
    if reinit:
        if init != "pretrained":
            raise ValueError(
                f"reinit: got {list(reinit)}; only init='pretrained' redraws chosen layers "
                "(the other modes draw every member whole)"
            )
        modules = dict(copies[0].named_modules())
        for path in reinit:
            if path not in modules or not path:
                raise ValueError(
                    f"reinit: {path!r} is not a submodule of the base; e.g. one of: "
                    f"{', '.join(n for n in list(modules)[1:6])}, ..."
                )
        for net, s in zip(copies, seeds):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                for path in reinit:
                    redraw(net.get_submodule(path), where=path)
        how += f"; {', '.join(reinit)} redrawn per member"
    return (copies, how) if describe else copies
