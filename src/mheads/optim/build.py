"""The optimizer and learning-rate schedule a config's ``optim`` section describes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from mheads.optim.schedules import Schedule

if TYPE_CHECKING:  # the config sits above this package: it validates against the schedules here
    from mheads.config import Config

__all__ = ["NoParameters", "build_optimizer"]


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


def build_optimizer(cfg: Config, params: list[torch.nn.Parameter]):
    """``(optimizer, schedule)`` for ``cfg.optim``; the averaged losses may raise the rate by M
    (the paper's)."""
    o = cfg.optim
    lr = o.lr * (cfg.model.members if o.lr_times_members else 1)
    opt = (torch.optim.SGD(params, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)
           if params else NoParameters())
    schedule = Schedule(kind=o.schedule, base_lr=lr, gamma=o.gamma, milestones=list(o.milestones),
                        every=o.every, window=o.window, threshold=o.threshold)
    return opt, schedule
