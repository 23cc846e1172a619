"""The paper's two networks (Arora & Bhatia, section III), as plain ``nn.Module``s."""

from collections.abc import Sequence

from torch import nn


class FFNN(nn.Sequential):
    """784 -> 512 -> 512 -> 10, ReLU between; softmax lives in the loss."""

    def __init__(self, hidden: int = 512, dropout: float = 0.0, num_classes: int = 10) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )  # fmt: skip


class CNN(nn.Sequential):
    """The Keras MNIST CNN: two 3x3 convs, 2x2 max-pool, a 128-unit dense layer.

    ``dropout``: the rates after the pool and after the dense layer (Keras' example: 0.25, 0.5); one
    number sets both, 0 removes it.
    """

    def __init__(self, dropout: float | Sequence[float] = (0.25, 0.5), num_classes: int = 10) -> None:
        after_pool, after_dense = (dropout, dropout) if isinstance(dropout, (int, float)) else dropout
        super().__init__(
            nn.Conv2d(1, 32, 3), nn.ReLU(),
            nn.Conv2d(32, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(after_pool),
            nn.Flatten(),
            nn.Linear(64 * 12 * 12, 128), nn.ReLU(), nn.Dropout(after_dense),
            nn.Linear(128, num_classes),
        )  # fmt: skip


def init_weights(net: nn.Module, scheme: str) -> nn.Module:
    """``torch``: leave PyTorch's defaults. ``keras``: Glorot-uniform weights and zero biases, as Keras does."""
    if scheme == "keras":
        for layer in net.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
    return net


class FastCNN(nn.Sequential):
    """The speedrun's small convnet: two conv-BN-ReLU-pool blocks, then one linear layer."""

    def __init__(self, width: tuple[int, int] = (32, 64), num_classes: int = 10) -> None:
        c1, c2 = width
        super().__init__(
            nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * 7 * 7, num_classes),
        )  # fmt: skip
