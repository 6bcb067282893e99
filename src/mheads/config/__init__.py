"""Run configuration: the validated dataclasses (``schema``: ``Config`` and the ``dist:`` section; one module
per other section: ``model_config``, ``data_config``, ``loss_config``, ``optim_config``, ``train_config``,
``task``; each field documented by its attribute docstring, which ``reference`` lists for docs/configs.md)
and reading them from YAML with overrides (``loading``). Files of many runs (the paper's tables, the demo)
are specs: :mod:`mheads.reproduce.spec`."""

from mheads.config.loading import (
    apply_overrides,
    config_from_dict,
    config_from_settings,
    load_config,
    read_yaml,
)
from mheads.config.reference import config_reference, field_docs
from mheads.config.schema import (
    SCHEMA_VERSION,
    Config,
    ConfigError,
    DataConfig,
    DistConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)
from mheads.config.task import PYTHON_TASK, TaskConfig, build_task, task_config_of

__all__ = [
    "SCHEMA_VERSION",
    "Config",
    "ConfigError",
    "DataConfig",
    "DistConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "PYTHON_TASK",
    "TaskConfig",
    "TrainConfig",
    "build_task",
    "task_config_of",
    "apply_overrides",
    "config_from_dict",
    "config_from_settings",
    "load_config",
    "read_yaml",
    "config_reference",
    "field_docs",
]
