"""Residual networks for 32x32 images, written as ordinary modules (residual additions and functional ops in
``forward``): TreeNets cut them at module paths with torch.fx (``"conv1"``, ``"layer1"``, ``"layer2.0"``,
...).

- ``resnet20`` / ``resnet32`` / ``resnet56``: He et al. 2016 (section 4.2), 3 stages of n basic blocks with
  16, 32 and 64 filters, identity shortcuts with zero-padded channels where the shape changes (option A,
  parameter-free); ResNet-20 has 0.27 M parameters (91.25% single-model CIFAR-10 test accuracy with the
  paper's full schedule).
- ``resnet18_cifar``: the ImageNet ResNet-18 block layout (2, 2, 2, 2 basic blocks, 64 to 512 filters) with a
  3x3 stem and no max-pooling, the common CIFAR variant; projection (1x1 convolution) shortcuts.
- ``wrn28_10``: Wide ResNet 28-10 (Zagoruyko & Komodakis 2016): pre-activation blocks, 4 per stage, widths
  160/320/640 (``widen`` sets the factor), optional dropout between the convolutions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mheads.models.registry import register_model

__all__ = ["CifarResNet", "WideResNet"]


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class PadShortcut(nn.Module):
    """Option A of He et al.: subsample by the stride and zero-pad the new channels (no parameters)."""

    def __init__(self, stride: int, extra: int):
        super().__init__()
        self.stride, self.extra = stride, extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, projection: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if projection
                else PadShortcut(stride, cout - cin)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """conv1 (3x3) -> bn1 -> relu -> layer1..layerK (basic blocks) -> global average pool -> fc."""

    def __init__(
        self,
        blocks: list[int],
        widths: list[int],
        num_classes: int = 10,
        in_channels: int = 3,
        projection: bool = False,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        cin = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(
                *[BasicBlock(cin if j == 0 else w, w, stride if j == 0 else 1, projection) for j in range(n)]
            )
            self.add_module(f"layer{i + 1}", layer)
            cin = w
        self.num_stages = len(blocks)
        self.fc = nn.Linear(cin, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def _he_resnet(n: int, num_classes: int, in_channels: int, image_size: int, width: float) -> CifarResNet:
    widths = [max(1, round(c * width)) for c in (16, 32, 64)]
    return CifarResNet([n, n, n], widths, num_classes, in_channels)


@register_model("resnet20", image_size=32, min_image_size=1)
def resnet20(
    num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> nn.Module:
    """ResNet-20 for CIFAR (He et al. 2016): 3 x 3 basic blocks; ``width`` scales every stage's filters."""
    return _he_resnet(3, num_classes, in_channels, image_size, width)


@register_model("resnet32", image_size=32, min_image_size=1)
def resnet32(
    num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> nn.Module:
    """ResNet-32 for CIFAR (He et al. 2016): 3 x 5 basic blocks."""
    return _he_resnet(5, num_classes, in_channels, image_size, width)


@register_model("resnet56", image_size=32, min_image_size=1, small_options={"width": 0.5})
def resnet56(
    num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> nn.Module:
    """ResNet-56 for CIFAR (He et al. 2016): 3 x 9 basic blocks."""
    return _he_resnet(9, num_classes, in_channels, image_size, width)


@register_model("resnet18_cifar", image_size=32, min_image_size=1, small_options={"width": 0.125})
def resnet18_cifar(
    num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> nn.Module:
    """ResNet-18 for CIFAR: 2, 2, 2, 2 basic blocks of 64, 128, 256, 512 filters (times ``width``), 3x3
    stem."""
    widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
    return CifarResNet([2, 2, 2, 2], widths, num_classes, in_channels, projection=True)


class WideBlock(nn.Module):
    """Pre-activation basic block: bn -> relu -> conv -> bn -> relu -> (dropout) -> conv, plus the
    shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(self.drop(F.relu(self.bn2(y))))
        return y + (self.shortcut(o) if self.shortcut is not None else x)


class WideResNet(nn.Module):
    """conv1 -> layer1..3 (pre-activation blocks) -> bn -> relu -> global average pool -> fc."""

    layer1: nn.Sequential  # the three stages, added by name in __init__
    layer2: nn.Sequential
    layer3: nn.Sequential

    def __init__(
        self,
        depth: int = 28,
        widen: int = 10,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"depth: got {depth}; a Wide ResNet has depth 6n + 4 (16, 22, 28, 40, ...)")
        n = (depth - 4) // 6
        widths = [16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        cin = 16
        for i, w in enumerate(widths):
            blocks = [
                WideBlock(cin if j == 0 else w, w, (1 if i == 0 else 2) if j == 0 else 1, dropout)
                for j in range(n)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            cin = w
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = F.relu(self.bn(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register_model("wrn28_10", image_size=32, min_image_size=1, small_options={"widen": 1})
def wrn28_10(
    num_classes: int = 10, in_channels: int = 3, image_size: int = 32, widen: int = 10, dropout: float = 0.0
) -> nn.Module:
    """Wide ResNet 28-10 (36.5 M parameters at widen 10; the paper's CIFAR dropout is 0.3)."""
    return WideResNet(28, widen, num_classes, in_channels, dropout)
