"""The CNN's CPU speed-ups compute the same function as the textbook eager stack (ReLU, MaxPool2d, nn.Dropout)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import hwbench.models
from hwbench.data import MNISTDataModule, TensorBatches
from hwbench.models import CNN, Dropout, init_weights, keep_mask


def textbook_cnn(dropout: float) -> nn.Sequential:
    """Keras' mnist_cnn as one writes it in PyTorch: the reference the fast CNN must match."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(dropout),
        nn.Flatten(), nn.Linear(64 * 12 * 12, 128), nn.ReLU(), nn.Dropout(dropout * 2), nn.Linear(128, 10),
    )  # fmt: skip


def batches(data_root: str, steps: int) -> list[tuple[Tensor, Tensor]]:
    data = MNISTDataModule(root=data_root, train_limit=128 * steps)
    data.setup()
    return list(TensorBatches(*data.splits["train"], 128, shuffle=True, seed=0))


def train(net: nn.Module, data: list[tuple[Tensor, Tensor]], lr: float = 0.01, seed: int = 1) -> list[float]:
    """Plain SGD steps as hwbench takes them; returns the loss curve."""
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    torch.manual_seed(seed)  # the dropout masks' stream
    losses = []
    for x, y in data:
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def same_start(dropout: float) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    reference = init_weights(textbook_cnn(dropout), "keras")
    fast = CNN(dropout=(dropout, dropout * 2))
    fast.load_state_dict(reference.state_dict())  # the same parameter names: only parameter-free layers moved
    return reference, fast


def test_pool_before_relu_and_in_place_relus_train_bit_for_bit(data_root: str) -> None:
    """Without dropout the two nets take the same SGD steps exactly: forward, gradients (ties too), updates."""
    reference, fast = same_start(0.0)
    data = batches(data_root, 8)
    assert train(reference, data) == train(fast, data)
    assert all(torch.equal(a, b) for a, b in zip(reference.parameters(), fast.parameters(), strict=True))


def test_fast_dropout_with_torchs_masks_trains_bit_for_bit(data_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given torch's own masks (drawn as aten's dropout draws them), the fast CNN's steps are eager's exactly."""
    monkeypatch.setattr(hwbench.models, "keep_mask", lambda shape, p: torch.empty(shape).bernoulli_(1 - p).bool())
    reference, fast = same_start(0.25)
    data = batches(data_root, 8)
    assert train(reference, data) == train(fast, data)
    assert all(torch.equal(a, b) for a, b in zip(reference.parameters(), fast.parameters(), strict=True))


def test_fast_cnn_trains_like_eager(data_root: str) -> None:
    """With its own masks only the dropout noise differs: the loss curves agree within that noise.

    lr 0.1 so that 60 steps take the loss from 2.3 to about 0.7. Two eager runs with different mask
    seeds differ by up to 0.06 nats on a 10-step mean of this curve (measured), the fast CNN against
    eager by up to 0.11: the bound is 0.2, and 0.05 on the whole curve's mean.
    """
    reference, fast = same_start(0.25)
    data = batches(data_root, 60)
    eager, ours = train(reference, data, lr=0.1), train(fast, data, lr=0.1)
    assert max(ours[-10:]) < 1.2 and max(eager[-10:]) < 1.2  # both learn, from about 2.3
    for lo in range(0, 60, 10):
        assert abs(sum(ours[lo : lo + 10]) - sum(eager[lo : lo + 10])) / 10 < 0.2
    assert abs(sum(ours) - sum(eager)) / 60 < 0.05


@pytest.mark.parametrize("p", [0.25, 0.5, 0.2])  # 0.2 is no multiple of 1/256: torch's bernoulli_
def test_keep_mask_is_bernoulli_with_the_keep_rate(p: float) -> None:
    torch.manual_seed(0)
    masks = keep_mask(torch.Size([64, 100_000]), p)
    assert masks.dtype == torch.bool and masks.shape == (64, 100_000)
    rates = masks.float().mean(dim=1)  # 64 masks of 100,000: each rate within 5 standard errors of 1 - p
    assert (rates - (1 - p)).abs().max() < 5 * (p * (1 - p) / 100_000) ** 0.5
    assert not torch.equal(masks[0], masks[1])  # a fresh mask each draw


def test_dropout_scales_kept_values_and_gradients() -> None:
    x = torch.randn(50_000, requires_grad=True)
    torch.manual_seed(0)
    y = Dropout(0.25)(x)
    kept = y != 0
    assert torch.equal(y[kept], x[kept] * torch.tensor(1 / 0.75))  # x * (mask / (1 - p)), as aten computes it
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, kept.float() / 0.75)
    assert torch.equal(Dropout(0.25).eval()(x), x)  # evaluation: the identity
