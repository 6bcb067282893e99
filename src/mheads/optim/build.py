"""The optimizer and learning-rate schedule a config's ``optim`` section describes.

Per-group multipliers follow Caffe's ``param { lr_mult decay_mult }``: a parameter's rate at each step is the
schedule's rate times its group's ``lr_mult`` (:func:`set_rate`), and its weight decay ``optim.weight_decay``
times its ``decay_mult``. With every multiplier at 1 the optimizer is built exactly as before they existed
(one group, no ``lr_mult`` key), so runs without them are bit-identical to earlier versions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from mheads.optim.schedules import Schedule

if TYPE_CHECKING:  # the config sits above this package: it validates against the schedules here
    from mheads.config import Config

__all__ = ["INVERSE_MEMBERS", "OPTIMIZERS", "NoParameters", "build_optimizer", "param_groups", "set_rate"]

OPTIMIZERS = ("sgd", "adamw")
INVERSE_MEMBERS = "inverse_members"  # optim.trunk_lr_mult: 1 / (members sharing the parameter)


class NoParameters:
    """The optimizer of a distributed rank that holds only the loss: nothing to update."""

    param_groups: list = []

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass

    def step(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def param_groups(params: list[torch.nn.Parameter], weight_decay: float, decay_norm_and_bias: bool):
    """The parameters as optimizer groups: one, or two where BatchNorm and bias parameters (fewer than 2
    dimensions) take no weight decay."""
    if decay_norm_and_bias:
        return params
    decay = [p for p in params if p.ndim >= 2]
    plain = [p for p in params if p.ndim < 2]
    return [
        g
        for g in ({"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0})
        if g["params"]
    ]


def has_multipliers(o) -> bool:
    """Whether ``optim`` asks for any rate or decay multiplier other than 1."""
    return o.bias_lr_mult != 1 or o.bias_decay_mult != 1 or o.trunk_lr_mult != 1


def _holders(tree) -> dict[int, int]:
    """id(parameter) -> how many members' root-to-leaf paths hold it (M for a TreeNet's trunk, 1 for a
    member's own layers, 0 for parameters outside the paths such as scoring heads)."""
    count: dict[int, int] = {}
    for path in tree.paths():
        for node in path:
            for p in node.layers.parameters():
                count[id(p)] = count.get(id(p), 0) + 1
    return count


def multiplied_groups(params: list[torch.nn.Parameter], o, tree, lr: float) -> list[dict]:
    """Groups of equal ``(lr_mult, weight_decay)``, in order of first appearance, each carrying its
    ``lr_mult``. A bias is a parameter whose name ends in ``bias`` (Caffe's second blob of a convolution or
    inner product); the trunk multiplier applies to parameters held by more than one member."""
    name_of = {id(p): n for n, p in tree.named_parameters()}
    holders = _holders(tree)
    groups: dict[tuple[float, float], dict] = {}
    for p in params:
        if id(p) not in name_of:
            raise ValueError(
                "optim multipliers: a parameter to optimize is not in the TreeNet (its name "
                "decides whether it is a bias)"
            )
        bias = name_of[id(p)].rsplit(".", 1)[-1] == "bias"
        mult = o.bias_lr_mult if bias else 1.0
        shared = holders.get(id(p), 0)
        if shared > 1:
            mult *= 1.0 / shared if o.trunk_lr_mult == INVERSE_MEMBERS else float(o.trunk_lr_mult)
        decay = o.weight_decay * (o.bias_decay_mult if bias else 1.0)
        if not o.decay_norm_and_bias and p.ndim < 2:
            decay = 0.0
        key = (float(mult), float(decay))
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": key[1], "lr_mult": key[0], "lr": lr * key[0]}
        groups[key]["params"].append(p)
    return list(groups.values())


def set_rate(opt, lr: float) -> None:
    """Set every group's rate for the next step: ``lr`` times the group's ``lr_mult`` (groups without one,
    the default, take ``lr`` itself)."""
    for g in opt.param_groups:
        g["lr"] = lr * g["lr_mult"] if "lr_mult" in g else lr


def build_optimizer(
    cfg: Config, params: list[torch.nn.Parameter], tree=None
) -> tuple[torch.optim.Optimizer | NoParameters, Schedule]:
    """``(optimizer, schedule)`` for ``cfg.optim``; the averaged losses may raise the rate by M (the
    paper's). ``tree``: the TreeNet that holds ``params``, needed by the per-group multipliers (names say
    which parameters are biases, its paths which are shared)."""
    o = cfg.optim
    lr = o.lr * (cfg.model.members if o.lr_times_members else 1)
    opt: torch.optim.Optimizer | NoParameters
    if not params:
        opt = NoParameters()
    else:
        if has_multipliers(o):
            if tree is None:
                raise ValueError(
                    "optim.bias_lr_mult / bias_decay_mult / trunk_lr_mult: build_optimizer "
                    "needs the TreeNet (tree=) to group the parameters"
                )
            groups = multiplied_groups(params, o, tree, lr)
        else:
            groups = param_groups(params, o.weight_decay, o.decay_norm_and_bias)
        if o.name == "adamw":
            # capturable on CUDA: its step count stays on the device, so a step can be guarded there
            # (train.sync: deferred) without reading it back
            opt = torch.optim.AdamW(
                groups, lr=lr, weight_decay=o.weight_decay, capturable=any(p.is_cuda for p in params)
            )
        else:
            opt = torch.optim.SGD(
                groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov
            )
    schedule = Schedule(
        kind=o.schedule,
        base_lr=lr,
        gamma=o.gamma,
        milestones=list(o.milestones),
        every=o.every,
        window=o.window,
        threshold=o.threshold,
        total=cfg.train.iterations,
        warmup=o.warmup,
    )
    return opt, schedule
