import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from hwbench.model.paper import CNN, FFNN, init_weights


@pytest.mark.parametrize(("net", "params"), [(FFNN(), 669_706), (CNN(), 1_199_882)])
def test_parameter_counts_match_the_paper(net: nn.Module, params: int) -> None:
    assert sum(p.numel() for p in net.parameters()) == params


@pytest.mark.parametrize("net", [FFNN(), CNN()])
def test_ten_logits_per_image(net: nn.Module) -> None:
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_keras_init_is_glorot_uniform_with_zero_biases() -> None:
    net = init_weights(FFNN(), "keras")
    first = net[1]
    bound = (6 / (784 + 512)) ** 0.5  # Glorot-uniform limit for a 784 -> 512 layer
    assert first.weight.abs().max() <= bound
    assert first.weight.abs().max() > 0.95 * bound  # uniform over the whole range, not PyTorch's narrower one
    assert all(torch.count_nonzero(m.bias) == 0 for m in net.modules() if isinstance(m, nn.Linear))


def test_torch_init_leaves_pytorch_defaults() -> None:
    torch.manual_seed(0)
    expected = FFNN().state_dict()
    torch.manual_seed(0)
    actual = init_weights(FFNN(), "torch").state_dict()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


def dropout_rates(net: nn.Module) -> list[float]:
    return [m.p for m in net.modules() if isinstance(m, nn.Dropout)]


@pytest.mark.parametrize(
    ("overrides", "rates"),
    [
        (["experiment=paper", "arch=ffnn"], []),  # 784-512-512-10, nothing else: no dropout layer at all
        (["experiment=paper", "arch=cnn"], [0.25, 0.5]),  # the Keras MNIST CNN, dropout included
        (["experiment=paper", "arch=cnn", "arch.net.dropout=0"], [0.0, 0.0]),
        (["experiment=keras_cnn"], [0.25, 0.5]),  # Keras' mnist_cnn.py
        (["experiment=keras_mlp"], [0.2, 0.2]),  # Keras' mnist_mlp.py
    ],
)
def test_experiments_build_the_dropout_they_describe(make_cfg, overrides: list[str], rates: list[float]) -> None:
    assert dropout_rates(instantiate(make_cfg(*overrides).arch.net)) == rates
