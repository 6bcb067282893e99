"""Base networks: the registry of families (see :mod:`mheads.models.registry`), one file per family."""

from mheads.models import caffenet, cifar10_quick, nin, resnet  # noqa: F401  (register the families)
from mheads.models.registry import (
    ModelInfo,
    UnknownModelError,
    create_model,
    import_model,
    is_import_path,
    list_models,
    model_factory,
    model_info,
    parameterized_layers,
    register_model,
)

__all__ = [
    "ModelInfo",
    "UnknownModelError",
    "create_model",
    "import_model",
    "is_import_path",
    "list_models",
    "model_factory",
    "model_info",
    "parameterized_layers",
    "register_model",
]
