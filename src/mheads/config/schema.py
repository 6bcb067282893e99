"""The run configuration: :class:`Config`, one validated dataclass per section of a config file, its checks
across sections, and the ``dist:`` section (:class:`DistConfig`). The other sections live one per module:
``model:`` in :mod:`mheads.config.model_config`, ``loss:`` in :mod:`mheads.config.loss_config`, ``optim:`` in
:mod:`mheads.config.optim_config`, ``train:`` in :mod:`mheads.config.train_config`, ``data:`` in
:mod:`mheads.config.data_config` and ``task:`` in :mod:`mheads.config.task`; the field checks and
:class:`ConfigError` in :mod:`mheads.config.fields`. Every one of them is importable from here.

Every error is a :class:`ConfigError` whose one-line message names the field (dotted path), the bad value and
what is allowed. A :class:`Config` validates itself when built (``__post_init__``) and again when ``fit``
starts, so a config built or edited in Python gets the same checks as one read from YAML. Names are checked
against the registries that own them: models (``mheads.models``), losses (``mheads.ensemble.losses.LOSSES``)
and schedules (``mheads.optim.schedules``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

from mheads.config.data_config import DataConfig
from mheads.config.fields import FLOAT32_MAX, MAX_COUNT, ConfigError
from mheads.config.fields import fail as _fail
from mheads.config.fields import integer as _int
from mheads.config.fields import number as _num
from mheads.config.loss_config import LossConfig
from mheads.config.model_config import ModelConfig
from mheads.config.optim_config import OptimConfig
from mheads.config.task import TaskConfig, TaskConfigError, task_loss_spec
from mheads.config.train_config import TrainConfig
from mheads.core.checks import is_int

# isort: split
# Importable from this module before it was split by concept: kept so that no caller's import breaks.
from mheads.config.fields import choice as _choice  # noqa: F401
from mheads.config.model_config import HEADS, INIT_MODES, PYTHON_MODEL  # noqa: F401
from mheads.config.task import task_loss_names  # noqa: F401
from mheads.core.checks import check_iterations  # noqa: F401
from mheads.models import is_import_path, list_models  # noqa: F401
from mheads.optim.build import OPTIMIZERS  # noqa: F401
from mheads.optim.schedules import SCHEDULE_KINDS  # noqa: F401
from mheads.tasks.heads import POOLS  # noqa: F401

SCHEMA_VERSION = 1


@dataclass
class DistConfig:
    """The ``dist:`` section: a run over several processes (mheads.dist; docs/distributed.md)."""

    placement: dict[str, Any] | None = None
    """Which rank holds the trunk and each branch, a mapping like {trunk: 0, branches: [0, 1, 2]} (null:
    round-robin)."""
    timeout_s: float = 120.0
    """The collective timeout in seconds, a number > 0: a rank that dies makes the others fail within about
    this long."""
    replicas: int = 1
    """Data-parallel copies of the placement, an integer >= 1 dividing train.batch_size; world size =
    replicas x the placement's ranks."""

    def validate(self, p: str = "dist") -> None:
        _num(f"{p}.timeout_s", self.timeout_s, 0.0, strict=True)
        _int(f"{p}.replicas", self.replicas, 1)
        if self.placement is not None and not isinstance(self.placement, dict):
            _fail(f"{p}.placement", self.placement, "a mapping like {trunk: 0, branches: [0, 1, 2]}")


@dataclass
class Config:
    """A run's whole configuration: one section per field, validated when built (``__post_init__``) and
    again when ``fit`` starts. docs/configs.md lists every field with its default
    (mheads.config.reference.config_reference writes that list from these docstrings)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The base network and its members (ModelConfig)."""
    data: DataConfig = field(default_factory=DataConfig)
    """The examples and how they are read (DataConfig)."""
    loss: LossConfig = field(default_factory=LossConfig)
    """The ensemble loss (LossConfig)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """The optimizer and schedule (OptimConfig)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The run's length, checkpoints and device (TrainConfig)."""
    dist: DistConfig = field(default_factory=DistConfig)
    """Several processes (DistConfig)."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """What a member's output means (TaskConfig)."""
    name: str = "run"
    """The run's name, a non-empty string."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> Config:
        self.model.validate()
        self.data.validate()
        if not isinstance(self.task, TaskConfig):
            _fail("task", self.task, "a mapping of task settings, e.g. {name: regression}")
        try:
            self.task.validate()
        except TaskConfigError as err:
            raise ConfigError(str(err)) from None
        self.loss.validate(self.model.members, model=self.model, task=self.task)
        self.optim.validate()
        self.train.validate()
        self.dist.validate()
        if not isinstance(self.name, str) or not self.name:
            _fail("name", self.name, "a non-empty string naming the run")
        t, o = self.train, self.optim
        if t.batch_size % self.dist.replicas:
            _fail(
                "dist.replicas",
                self.dist.replicas,
                f"a divisor of train.batch_size ({t.batch_size}): "
                "each replica reads an equal shard of every batch",
            )
        if t.iterations * t.accumulate * t.batch_size > MAX_COUNT:
            _fail(
                "train.iterations",
                t.iterations,
                f"train.iterations x train.accumulate ({t.accumulate}) x "
                f"train.batch_size ({t.batch_size}) at most {MAX_COUNT} images",
            )
        lr = o.lr * (self.model.members if o.lr_times_members else 1)
        if lr > FLOAT32_MAX or lr * max(o.weight_decay, 1.0) > FLOAT32_MAX:
            _fail(
                "optim.lr",
                o.lr,
                f"a learning rate whose product with the members (when "
                f"optim.lr_times_members) and optim.weight_decay stays below {FLOAT32_MAX:.3g} (the "
                "optimizer computes in float32)",
            )
        if self.data.bagging and task_loss_spec(self.task, self.loss.name).average is not None:
            _fail("data.bagging", True, "false with an averaged loss (bagging weights members separately)")
        if self.data.label_split is not None:
            ls = self.data.label_split
            if not isinstance(ls, list) or len(ls) != self.model.members:
                _fail("data.label_split", ls, f"a list of {self.model.members} label lists (one per member)")
            for m, labels in enumerate(ls):
                ok = isinstance(labels, list) and bool(labels)
                if not ok or not all(is_int(c) and c >= 0 for c in labels):
                    _fail(f"data.label_split[{m}]", labels, "a non-empty list of class indices >= 0")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if isinstance(d["model"]["split"], (list, tuple)):
            d["model"]["split"] = [list(level) for level in d["model"]["split"]]
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)
