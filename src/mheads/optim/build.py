"""The optimizer and learning-rate schedule a config's ``optim`` section describes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from mheads.optim.schedules import Schedule

if TYPE_CHECKING:  # the config sits above this package: it validates against the schedules here
    from mheads.config import Config

__all__ = ["OPTIMIZERS", "NoParameters", "build_optimizer", "param_groups"]

OPTIMIZERS = ("sgd", "adamw")


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
    return [g for g in ({"params": decay, "weight_decay": weight_decay},
                        {"params": plain, "weight_decay": 0.0}) if g["params"]]


def build_optimizer(cfg: Config, params: list[torch.nn.Parameter]):
    """``(optimizer, schedule)`` for ``cfg.optim``; the averaged losses may raise the rate by M (the
    paper's)."""
    o = cfg.optim
    lr = o.lr * (cfg.model.members if o.lr_times_members else 1)
    if not params:
        opt = NoParameters()
    else:
        groups = param_groups(params, o.weight_decay, o.decay_norm_and_bias)
        if o.name == "adamw":
            # capturable on CUDA: its step count stays on the device, so a step can be guarded there
            # (train.sync: deferred) without reading it back
            opt = torch.optim.AdamW(groups, lr=lr, weight_decay=o.weight_decay,
                                    capturable=any(p.is_cuda for p in params))
        else:
            opt = torch.optim.SGD(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay,
                                  nesterov=o.nesterov)
    schedule = Schedule(kind=o.schedule, base_lr=lr, gamma=o.gamma, milestones=list(o.milestones),
                        every=o.every, window=o.window, threshold=o.threshold, total=cfg.train.iterations,
                        warmup=o.warmup)
    return opt, schedule
