"""Caffe's CIFAR10-Quick (examples/cifar10/cifar10_quick_train_test.prototxt), the paper's CIFAR-10 base
model."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

from torch import nn

from mheads.models.registry import flat_features, register_model

_Layer = TypeVar("_Layer", nn.Conv2d, nn.Linear)


def _gauss(layer: _Layer, std: float) -> _Layer:
    # Caffe's "gaussian" weight filler with constant-zero bias, as in the prototxt.
    nn.init.normal_(layer.weight, mean=0.0, std=std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


@register_model("cifar10_quick", image_size=32, min_image_size=8)
def cifar10_quick(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Sequential:
    """conv1 32@5x5 pad 2, max-pool 3/2, ReLU; conv2 32@5x5, ReLU, avg-pool 3/2; conv3 64@5x5, ReLU,
    avg-pool 3/2; ip1 64; ip2 C. Pooling uses Caffe's ceil-mode output size; note that Caffe has no ReLU
    between ip1 and ip2."""
    layers = OrderedDict(
        conv1=_gauss(nn.Conv2d(in_channels, 32, 5, padding=2), 0.0001),
        pool1=nn.MaxPool2d(3, 2, ceil_mode=True),
        relu1=nn.ReLU(),
        conv2=_gauss(nn.Conv2d(32, 32, 5, padding=2), 0.01),
        relu2=nn.ReLU(),
        pool2=nn.AvgPool2d(3, 2, ceil_mode=True),
        conv3=_gauss(nn.Conv2d(32, 64, 5, padding=2), 0.01),
        relu3=nn.ReLU(),
        pool3=nn.AvgPool2d(3, 2, ceil_mode=True),
        flatten=nn.Flatten(),
    )
    n_flat = flat_features(nn.Sequential(layers), in_channels, image_size)
    layers["ip1"] = _gauss(nn.Linear(n_flat, 64), 0.1)
    layers["ip2"] = _gauss(nn.Linear(64, num_classes), 0.1)
    return nn.Sequential(layers)
