"""The paper's two networks (Arora & Bhatia, section III), in the paper's words.

Their layers are torch's, through ``hwbench.model.cpu_kernels``: the same layers with a second way to run on a CPU,
chosen per machine by measurement before training (``device.cpu_kernels``); torch's own by default.
"""

from collections.abc import Sequence

from torch import nn

from hwbench.model.cpu_kernels import Conv2d, Dropout, Linear


def dropped(rate: float) -> list[nn.Module]:
    """A dropout layer at ``rate``; none at 0."""
    return [Dropout(rate)] if rate else []


class FFNN(nn.Sequential):
    """784-512-512-10: "we reshape the image matrix into a vector of size 784 x 1 and feed it as input. The
    two hidden layers consist of 512 neurons each, which feed output to a layer of 10 neurons." "ReLU
    activation function is added in each layer"; the softmax lives in the loss. Keras' mnist_mlp adds dropout
    (none at 0: a layer that passes its input on still costs a call per step)."""

    def __init__(self, hidden: int = 512, dropout: float = 0.0, num_classes: int = 10) -> None:
        super().__init__(
            nn.Flatten(),                                                 # "a vector of size 784 x 1"
            Linear(28 * 28, hidden), nn.ReLU(), *dropped(dropout),        # "two hidden layers ... 512 neurons each"
            Linear(hidden, hidden), nn.ReLU(), *dropped(dropout),
            Linear(hidden, num_classes),                                  # "a layer of 10 neurons"
        )  # fmt: skip


class CNN(nn.Sequential):
    """Two convolutions, a max-pool, two dense layers: "convolution layers, followed by fully connected
    layers", as Keras' mnist_cnn builds them, which the paper's
    description matches (it gives no filter counts). ``dropout``: the rates after the pool and after the
    dense layer (Keras: 0.25, 0.5); one number sets both, 0 removes it.

    The second ReLU comes after the max-pool: they commute (forward and gradient, ties included), and the
    ReLU then touches a quarter of the elements; tests check the whole against the textbook order.
    """

    def __init__(self, dropout: float | Sequence[float] = (0.25, 0.5), num_classes: int = 10) -> None:
        after_pool, after_dense = (dropout, dropout) if isinstance(dropout, (int, float)) else dropout
        super().__init__(
            Conv2d(1, 32, 3), nn.ReLU(),                                  # "filters ... using Conv2D"
            Conv2d(32, 64, 3), nn.MaxPool2d(2), nn.ReLU(),                # "Along with ReLu layer ... MaxPooling"
            Dropout(after_pool),
            nn.Flatten(),
            Linear(64 * 12 * 12, 128), nn.ReLU(), Dropout(after_dense),   # "fully connected layers"
            Linear(128, num_classes),
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
