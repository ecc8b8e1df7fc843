"""Networks that map a batch of images ``(N, C, H, W)`` to class logits.

Each takes ``input_shape`` and ``num_classes`` from the data, the rest from ``model.net``.
"""

import math
from collections.abc import Sequence

from torch import nn


class MLP(nn.Sequential):
    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden_dims: Sequence[int] = (64, 128, 64),
        batch_norm: bool = True,
        dropout: float = 0.0,
    ):
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for hidden in hidden_dims:
            layers.append(nn.Linear(width, hidden, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(nn.ReLU(inplace=True))
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)


def conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x):
        return x + self.body(x)


class ResNet(nn.Module):
    """A small residual convnet in the style of ResNet-9, the network of fast CIFAR-10 training recipes.

    A stem convolution, then per stage a convolution, a 2x downsampling while the image
    is larger than 1x1, and optionally a residual block; global pooling and a linear head.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        widths: Sequence[int] = (64, 128, 256, 512),
        residual: Sequence[bool] = (True, False, True),
    ):
        super().__init__()
        if len(residual) != len(widths) - 1:
            raise ValueError(
                f"residual needs one flag per stage after the stem: {len(widths) - 1}, got {len(residual)}"
            )
        channels, size = input_shape[0], min(input_shape[1:])
        layers: list[nn.Module] = [conv_bn(channels, widths[0])]
        for width_in, width, has_residual in zip(widths, widths[1:], residual, strict=False):
            layers.append(conv_bn(width_in, width))
            if size > 1:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            if has_residual:
                layers.append(Residual(width))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes))

    def forward(self, x):
        return self.head(self.features(x))
