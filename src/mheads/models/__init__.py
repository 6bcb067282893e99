"""Base networks, each an ``nn.Sequential`` of named layers (see :mod:`mheads.models.registry`)."""

from mheads.models import caffenet, cifar10_quick, nin  # noqa: F401  (register the families)
from mheads.models.registry import (
    ModelInfo,
    UnknownModelError,
    create_model,
    list_models,
    model_factory,
    model_info,
    parameterized_layers,
    register_model,
)

__all__ = ["ModelInfo", "UnknownModelError", "create_model", "list_models", "model_factory", "model_info",
           "parameterized_layers", "register_model"]
