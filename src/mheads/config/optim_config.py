"""The ``optim:`` section of a run's configuration, :class:`OptimConfig`: the optimizer, its per-group rate
and decay multipliers and the learning-rate schedule, checked against the names ``mheads.optim`` registers.
Part of :mod:`mheads.config.schema`, which gathers the sections into a
:class:`~mheads.config.schema.Config`."""

from __future__ import annotations

from dataclasses import dataclass, field

from mheads.config.fields import ConfigError
from mheads.config.fields import choice as _choice
from mheads.config.fields import fail as _fail
from mheads.config.fields import integer as _int
from mheads.config.fields import number as _num
from mheads.core.checks import check_iterations
from mheads.optim.build import OPTIMIZERS
from mheads.optim.schedules import SCHEDULE_KINDS

__all__ = ["OptimConfig"]


@dataclass
class OptimConfig:
    """The ``optim:`` section: the optimizer, its per-group multipliers and the learning-rate schedule
    (mheads.optim; the defaults are Caffe's CIFAR10-Quick solver)."""

    name: str = "sgd"
    """The optimizer: sgd | adamw."""
    lr: float = 0.001
    """The base learning rate, a number > 0."""
    momentum: float = 0.9
    """sgd: the momentum, a number in [0, 1]."""
    nesterov: bool = False
    """true or false: Nesterov momentum (true only with optim.name sgd and optim.momentum > 0)."""
    weight_decay: float = 0.004
    """The weight decay (L2 for sgd, decoupled for adamw), a number >= 0."""
    decay_norm_and_bias: bool = True
    """true or false; false: no weight decay on BatchNorm and bias parameters (every parameter with fewer
    than 2 dimensions)."""
    lr_times_members: bool = False
    """true or false: multiply optim.lr by model.members (averaged losses scale member gradients by 1/M; the
    paper raises the rate by M)."""
    bias_lr_mult: float = 1.0
    """A bias (a parameter named ...bias) trains at lr * bias_lr_mult, a number >= 0: Caffe's lr_mult
    (CIFAR10-Quick's prototxt: lr_mult 2 on every bias). The schedule's rate is scaled by each group's
    multiplier at every step. 1 (with bias_decay_mult 1): one rate and one decay for every parameter, as in
    the results committed before issue 34."""
    bias_decay_mult: float = 1.0
    """A bias's weight decay is weight_decay * bias_decay_mult, a number >= 0: Caffe's decay_mult
    (CIFAR10-Quick sets none, i.e. 1)."""
    trunk_lr_mult: float | str = 1.0
    """The rate multiplier of parameters that several members share (a TreeNet's trunk receives the sum of
    their gradients): a number >= 0, or inverse_members (1 / the number of members sharing it: 1/M for the
    trunk)."""
    schedule: str = "steps"
    """The learning-rate schedule (mheads.optim.schedules): fixed | steps (multiply by optim.gamma at each of
    optim.milestones) | every (multiply by optim.gamma every optim.every iterations) | cosine (to 0 over the
    run) | plateau (multiply by optim.gamma when the mean training loss over optim.window iterations fails
    to drop by optim.threshold: the paper's CIFAR100-NiN rule)."""
    warmup: int = 0
    """Linear learning-rate warm-up over the first this many iterations (any schedule), an integer >= 0."""
    milestones: list[int] = field(default_factory=lambda: [4000])
    """steps: the iterations at which the rate is multiplied by optim.gamma, a list of integers >= 1."""
    gamma: float = 0.1
    """steps, every, plateau: the factor the rate is multiplied by, a number in (0, 1]."""
    every: int = 0
    """every: the period in iterations, an integer >= 1 (unused by the other schedules)."""
    window: int = 1000
    """plateau: the iterations whose mean training loss is compared with the previous window's, an integer
    >= 1."""
    threshold: float = 0.01
    """plateau: the relative drop of the mean loss below which the rate is cut, a number in [0, 1] (0.01:
    1%)."""

    def validate(self, p: str = "optim") -> None:
        _choice(f"{p}.name", self.name, OPTIMIZERS)
        _num(f"{p}.lr", self.lr, 0.0, strict=True)
        _num(f"{p}.momentum", self.momentum, 0.0, high=1.0)
        for name in ("nesterov", "decay_norm_and_bias"):
            if not isinstance(getattr(self, name), bool):
                _fail(f"{p}.{name}", getattr(self, name), "true or false")
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            _fail(f"{p}.nesterov", True, "false unless optim.name is sgd with optim.momentum > 0")
        _int(f"{p}.warmup", self.warmup, 0)
        _num(f"{p}.weight_decay", self.weight_decay, 0.0)
        _choice(f"{p}.schedule", self.schedule, SCHEDULE_KINDS)
        _num(f"{p}.gamma", self.gamma, 0.0, strict=True, high=1.0)
        check_iterations(f"{p}.milestones", self.milestones, error=ConfigError)
        if self.schedule == "every":
            _int(f"{p}.every", self.every, 1)
        if self.schedule == "plateau":
            _int(f"{p}.window", self.window, 1)
        _num(f"{p}.threshold", self.threshold, 0.0, high=1.0)
        from mheads.optim.build import INVERSE_MEMBERS  # kept inside OptimConfig (shared file)

        _num(f"{p}.bias_lr_mult", self.bias_lr_mult, 0.0)
        _num(f"{p}.bias_decay_mult", self.bias_decay_mult, 0.0)
        if self.trunk_lr_mult != INVERSE_MEMBERS:
            if isinstance(self.trunk_lr_mult, str):
                _fail(f"{p}.trunk_lr_mult", self.trunk_lr_mult, f"a number >= 0 or {INVERSE_MEMBERS}")
            _num(f"{p}.trunk_lr_mult", self.trunk_lr_mult, 0.0)
