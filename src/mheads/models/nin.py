"""Network in Network (Lin, Chen, Yan 2014): the CIFAR model and the ILSVRC model, with Caffe layer names.

``width`` scales every hidden channel count (1.0 is the published network) so that CPU-sized analogues and
tests can use the same topology and the same split-point names. ``init`` picks the weights' starting point:
``"caffe"`` (the published fixed-std Gaussians) or ``"he"`` (Kaiming-normal, fan-in, for ReLU). The fixed stds
shrink the signal through nine ReLU layers by a factor set by the fan-ins, so a narrow network starts dead:
at width 0.25 the CIFAR model's output is about 1e-5 of its input and its loss stays at ln 10 (measured: 400
iterations at lr 0.01, ``experiments/table2_nin.yaml``); ``"he"`` keeps the signal's scale at any width.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from mheads.models.registry import flat_features, register_model


def _ch(n: int, width: float) -> int:
    if not width > 0:
        raise ValueError(f"width: got {width!r}; expected a number > 0")
    return max(1, round(n * width))


INITS = ("caffe", "he")


def _check_init(init: str) -> str:
    if init not in INITS:
        raise ValueError(f"init: got {init!r}; expected one of {', '.join(map(repr, INITS))}")
    return init


def _conv(cin: int, cout: int, k: int, std: float, init: str, **kw) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, k, **kw)
    if init == "he":
        nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    else:
        nn.init.normal_(conv.weight, 0.0, std)
    if conv.bias is not None:  # bias=False in kw: nothing to fill
        nn.init.zeros_(conv.bias)
    return conv


def _mlpconv(
    layers: OrderedDict,
    names: tuple[str, str, str],
    cin: int,
    chans: tuple[int, int, int],
    k: int,
    std: float,
    relu_last: bool = True,
    *,
    init: str,
    **conv_kw,
) -> int:
    """One NiN block: a k x k conv followed by two 1x1 convs ("cccp"), each followed by a ReLU."""
    c1, c2, c3 = chans
    for i, (name, cout) in enumerate(zip(names, (c1, c2, c3))):
        layers[name] = _conv(cin, cout, k if i == 0 else 1, std, init, **(conv_kw if i == 0 else {}))
        if i < 2 or relu_last:
            layers[f"relu_{name}"] = nn.ReLU()
        cin = cout
    return cin


@register_model("nin_cifar", image_size=32, min_image_size=4, small_options={"width": 0.25})
def nin_cifar(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    width: float = 1.0,
    dropout: float = 0.5,
    init: str = "caffe",
) -> nn.Sequential:
    """NiN for CIFAR: conv1 192@5x5, cccp1 160, cccp2 96, max-pool; conv2 192@5x5, cccp3, cccp4 192, avg-pool;
    conv3 192@3x3, cccp5 192, cccp6 C, global average pool. Gaussian init, std 0.05, as in the Caffe
    recipe (``init="caffe"``) or He-normal (``init="he"``)."""
    init = _check_init(init)
    L: OrderedDict = OrderedDict()
    c = _mlpconv(
        L,
        ("conv1", "cccp1", "cccp2"),
        in_channels,
        (_ch(192, width), _ch(160, width), _ch(96, width)),
        5,
        0.05,
        init=init,
        padding=2,
    )
    L["pool1"] = nn.MaxPool2d(3, 2, ceil_mode=True)
    L["drop1"] = nn.Dropout(dropout)
    c = _mlpconv(L, ("conv2", "cccp3", "cccp4"), c, (_ch(192, width),) * 3, 5, 0.05, init=init, padding=2)
    L["pool2"] = nn.AvgPool2d(3, 2, ceil_mode=True)
    L["drop2"] = nn.Dropout(dropout)
    _mlpconv(
        L,
        ("conv3", "cccp5", "cccp6"),
        c,
        (_ch(192, width), _ch(192, width), num_classes),
        3,
        0.05,
        init=init,
        padding=1,
    )
    L["pool3"] = nn.AdaptiveAvgPool2d(1)
    L["flatten"] = nn.Flatten()
    net = nn.Sequential(L)
    flat_features(net, in_channels, image_size)  # refuses image sizes the network cannot take
    return net


@register_model("nin_imagenet", image_size=224, min_image_size=39, small_options={"width": 0.1})
def nin_imagenet(
    num_classes: int = 1000,
    in_channels: int = 3,
    image_size: int = 224,
    width: float = 1.0,
    dropout: float = 0.5,
    init: str = "caffe",
) -> nn.Sequential:
    """NiN for ILSVRC (Caffe model zoo): conv1 96@11x11/4, cccp1, cccp2; conv2 256@5x5, cccp3, cccp4;
    conv3 384@3x3, cccp5, cccp6; conv4 1024@3x3, cccp7 1024, cccp8 C; global average pool."""
    init = _check_init(init)
    L: OrderedDict = OrderedDict()
    c = _mlpconv(
        L, ("conv1", "cccp1", "cccp2"), in_channels, (_ch(96, width),) * 3, 11, 0.01, init=init, stride=4
    )
    L["pool1"] = nn.MaxPool2d(3, 2, ceil_mode=True)
    c = _mlpconv(L, ("conv2", "cccp3", "cccp4"), c, (_ch(256, width),) * 3, 5, 0.05, init=init, padding=2)
    L["pool2"] = nn.MaxPool2d(3, 2, ceil_mode=True)
    c = _mlpconv(L, ("conv3", "cccp5", "cccp6"), c, (_ch(384, width),) * 3, 3, 0.03, init=init, padding=1)
    L["pool3"] = nn.MaxPool2d(3, 2, ceil_mode=True)
    L["drop3"] = nn.Dropout(dropout)
    _mlpconv(
        L,
        ("conv4", "cccp7", "cccp8"),
        c,
        (_ch(1024, width), _ch(1024, width), num_classes),
        3,
        0.05,
        init=init,
        padding=1,
    )
    L["pool4"] = nn.AdaptiveAvgPool2d(1)
    L["flatten"] = nn.Flatten()
    net = nn.Sequential(L)
    flat_features(net, in_channels, image_size)
    return net
