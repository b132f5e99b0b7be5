"""CIFAR-style ResNets: the victim (ResNet-18) and the small surrogate feature extractor.

The CIFAR variant of He et al. 2016 (3x3 stem, no max-pool), as used by Huang et al. 2021 and Zhang et al. 2025 for
unlearnable examples. `width` scales every stage (64 = the standard ResNet-18); smaller widths keep CPU runs short.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet with `blocks` per stage; `features(x)` is the penultimate (pooled) layer."""

    def __init__(
        self,
        *,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        width: int = 64,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        layers, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            for j in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.feature_dim = cin
        self.fc = nn.Linear(cin, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def resnet18(*, width: int = 64, num_classes: int = 10) -> ResNet:
    """ResNet-18 (2-2-2-2 basic blocks), CIFAR variant."""
    return ResNet(blocks=(2, 2, 2, 2), width=width, num_classes=num_classes)


def small_resnet(*, width: int = 16, num_classes: int = 10) -> ResNet:
    """A three-stage ResNet-8-like net: the cheap surrogate refit during BEO."""
    return ResNet(blocks=(1, 1, 1), width=width, num_classes=num_classes)
