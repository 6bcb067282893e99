"""Run configuration: the validated dataclasses (``schema``), reading them from YAML with overrides
(``loading``) and recipe files of named runs (``recipes``)."""

from mheads.config.loading import (
    apply_overrides,
    config_from_dict,
    config_from_settings,
    load_config,
    read_yaml,
)
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

__all__ = [
    "SCHEMA_VERSION", "Config", "ConfigError", "DataConfig", "DistConfig", "LossConfig", "ModelConfig",
    "OptimConfig", "TrainConfig", "apply_overrides", "config_from_dict", "config_from_settings",
    "load_config", "read_yaml",
]
