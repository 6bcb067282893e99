"""CaffeNet (Caffe's bvlc_reference_caffenet, AlexNet-like), the paper's ILSVRC-Alex base model."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

from torch import nn

from mheads.models.registry import flat_features, register_model

_Layer = TypeVar("_Layer", nn.Conv2d, nn.Linear)


def _init(layer: _Layer, std: float, bias: float) -> _Layer:
    nn.init.normal_(layer.weight, 0.0, std)
    if layer.bias is not None:
        nn.init.constant_(layer.bias, bias)
    return layer


def _even(n: float) -> int:
    # conv2/4/5 use two groups, so their channel counts must stay even under a width multiplier.
    return max(2, 2 * round(n / 2))


@register_model("caffenet", image_size=227, min_image_size=39, small_options={"width": 0.1})
def caffenet(
    num_classes: int = 1000,
    in_channels: int = 3,
    image_size: int = 227,
    width: float = 1.0,
    dropout: float = 0.5,
) -> nn.Sequential:
    """conv1 96@11x11/4, pool, LRN; conv2 256@5x5 (2 groups), pool, LRN; conv3 384@3x3; conv4 384@3x3
    (2 groups); conv5 256@3x3 (2 groups), pool; fc6 4096; fc7 4096; fc8 C. Caffe's initialization
    (std 0.01 / 0.005, biases 0 or 1). ``width`` scales every hidden width (1.0 is the published network)."""
    if not width > 0:
        raise ValueError(f"width: got {width!r}; expected a number > 0")
    c1, c2, c3, c4, c5 = (_even(n * width) for n in (96, 256, 384, 384, 256))
    f = max(1, round(4096 * width))
    L: OrderedDict = OrderedDict(
        conv1=_init(nn.Conv2d(in_channels, c1, 11, stride=4), 0.01, 0.0),
        relu1=nn.ReLU(),
        pool1=nn.MaxPool2d(3, 2, ceil_mode=True),
        norm1=nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75),
        conv2=_init(nn.Conv2d(c1, c2, 5, padding=2, groups=2), 0.01, 1.0),
        relu2=nn.ReLU(),
        pool2=nn.MaxPool2d(3, 2, ceil_mode=True),
        norm2=nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75),
        conv3=_init(nn.Conv2d(c2, c3, 3, padding=1), 0.01, 0.0),
        relu3=nn.ReLU(),
        conv4=_init(nn.Conv2d(c3, c4, 3, padding=1, groups=2), 0.01, 1.0),
        relu4=nn.ReLU(),
        conv5=_init(nn.Conv2d(c4, c5, 3, padding=1, groups=2), 0.01, 1.0),
        relu5=nn.ReLU(),
        pool5=nn.MaxPool2d(3, 2, ceil_mode=True),
        flatten=nn.Flatten(),
    )
    n_flat = flat_features(nn.Sequential(L), in_channels, image_size)
    L["fc6"] = _init(nn.Linear(n_flat, f), 0.005, 1.0)
    L["relu6"] = nn.ReLU()
    L["drop6"] = nn.Dropout(dropout)
    L["fc7"] = _init(nn.Linear(f, f), 0.005, 1.0)
    L["relu7"] = nn.ReLU()
    L["drop7"] = nn.Dropout(dropout)
    L["fc8"] = _init(nn.Linear(f, num_classes), 0.01, 0.0)
    return nn.Sequential(L)
