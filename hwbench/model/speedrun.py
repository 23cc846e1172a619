"""The speedrun's network (``arch=speedrun``): not the paper's, the smallest convnet that reliably reaches 99%."""

from collections.abc import Sequence

from torch import nn


class SpeedrunNet(nn.Sequential):
    """Conv-BN-ReLU-max-pool blocks of the given widths (3x3 convolutions), then a linear head, with a hidden
    dense layer of ``hidden`` units before it when ``hidden`` > 0."""

    def __init__(self, widths: Sequence[int] = (32, 64), hidden: int = 0, num_classes: int = 10) -> None:
        layers: list[nn.Module] = []
        channels, side = 1, 28
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.MaxPool2d(2)]  # fmt: skip
            channels, side = width, side // 2
        layers.append(nn.Flatten())
        features = channels * side * side
        if hidden:
            layers += [nn.Linear(features, hidden), nn.ReLU()]
            features = hidden
        layers.append(nn.Linear(features, num_classes))
        super().__init__(*layers)
