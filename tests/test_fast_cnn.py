"""The CNN's CPU speed-ups compute the same function as the textbook eager stack (NCHW, ReLU then MaxPool2d,
nn.Dropout): bit for bit where the layout and the random stream allow, within float32 rounding or dropout's
noise where they do not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import hwbench.models
from hwbench.data import MNISTDataModule, TensorBatches
from hwbench.models import CNN, FFNN, Dropout, Linear, init_weights, keep_mask


def textbook_cnn(dropout: float, linear: type[nn.Linear] = nn.Linear) -> nn.Sequential:
    """Keras' mnist_cnn as one writes it in PyTorch: the reference the fast CNN must match."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(dropout),
        nn.Flatten(), linear(64 * 12 * 12, 128), nn.ReLU(), nn.Dropout(dropout * 2), linear(128, 10),
    )  # fmt: skip


def batches(data_root: str, steps: int) -> list[tuple[Tensor, Tensor]]:
    data = MNISTDataModule(root=data_root, train_limit=128 * steps)
    data.setup()
    return list(TensorBatches(*data.splits["train"], 128, shuffle=True, seed=0))


def train(
    net: nn.Module, data: list[tuple[Tensor, Tensor]], lr: float = 0.01, seed: int = 1, channels_last: bool = False
) -> list[float]:
    """Plain SGD steps as hwbench takes them; returns the loss curve."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    torch.manual_seed(seed)  # the dropout masks' stream
    losses = []
    for x, y in data:
        loss = F.cross_entropy(net(x.contiguous(memory_format=fmt)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def same_start(dropout: float, channels_last: bool = False) -> tuple[nn.Module, nn.Module]:
    """The textbook stack and the fast CNN. ``channels_last``: the reference runs in the fast CNN's layout and
    with its oneDNN ``Linear``, to check the rest bit for bit; else it is plain NCHW with ``nn.Linear``."""
    torch.manual_seed(0)
    reference = init_weights(textbook_cnn(dropout, Linear if channels_last else nn.Linear), "keras")
    fast = CNN(dropout=(dropout, dropout * 2))
    fast.load_state_dict(reference.state_dict())  # the same parameter names: only parameter-free layers moved
    if channels_last:  # its batches go channels-last in train(): a layout, not a different function
        reference = reference.to(memory_format=torch.channels_last)
    return reference, fast


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_pool_before_relu_trains_bit_for_bit(data_root: str) -> None:
    """Without dropout, and in the layout the fast CNN runs in, both take the same SGD steps exactly:
    forward, gradients (ties included: max-pool and ReLU commute) and updates."""
    reference, fast = same_start(0.0, channels_last=True)
    data = batches(data_root, 8)
    assert train(reference, data, channels_last=True) == train(fast, data)
    assert same_weights(reference, fast)


def test_fast_dropout_with_torchs_masks_trains_bit_for_bit(data_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given torch's own masks (drawn as aten's dropout draws them), the fast CNN's steps are eager's exactly."""
    monkeypatch.setattr(hwbench.models, "keep_mask", lambda x, p: torch.empty_like(x).bernoulli_(1 - p).bool())
    reference, fast = same_start(0.25, channels_last=True)
    data = batches(data_root, 8)
    assert train(reference, data, channels_last=True) == train(fast, data)
    assert same_weights(reference, fast)


def test_channels_last_and_onednn_linear_train_like_nchw_within_rounding(data_root: str) -> None:
    """Against the textbook NCHW stack only the summation order of the convolutions and matmuls differs:
    after 8 SGD steps every weight agrees to float32 rounding."""
    reference, fast = same_start(0.0)
    data = batches(data_root, 8)
    eager, ours = train(reference, data), train(fast, data)
    assert max(abs(a - b) for a, b in zip(eager, ours, strict=True)) < 1e-5
    for p, q in zip(reference.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6)


def test_fast_cnn_trains_like_eager(data_root: str) -> None:
    """With its own masks only the dropout noise differs: the loss curves agree within that noise.

    lr 0.1 so that 60 steps take the loss from 2.3 to about 0.7. Two eager runs with different mask
    seeds differ by up to 0.10 nats on a 10-step mean of this curve (measured), the fast CNN against
    eager by up to 0.07: the bound is 0.2, and 0.05 on the whole curve's mean.
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
    masks = keep_mask(torch.empty(64, 100_000), p)
    assert masks.dtype == torch.bool and masks.shape == (64, 100_000)
    rates = masks.float().mean(dim=1)  # 64 masks of 100,000: each rate within 5 standard errors of 1 - p
    assert (rates - (1 - p)).abs().max() < 5 * (p * (1 - p) / 100_000) ** 0.5
    assert not torch.equal(masks[0], masks[1])  # a fresh mask each draw
    like = torch.empty(2, 64, 3, 3).contiguous(memory_format=torch.channels_last)
    assert keep_mask(like, p).stride() == like.stride()  # laid out like its input


def test_dropout_scales_kept_values_and_gradients() -> None:
    x = torch.randn(50_000, requires_grad=True)
    torch.manual_seed(0)
    y = Dropout(0.25)(x)
    kept = y != 0
    assert torch.equal(y[kept], x[kept] * torch.tensor(1 / 0.75))  # x * (mask / (1 - p)), as aten computes it
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, kept.float() / 0.75)
    assert torch.equal(Dropout(0.25).eval()(x), x)  # evaluation: the identity


def test_onednn_linear_gradients_match_nn_linear() -> None:
    torch.manual_seed(0)
    fast, plain = Linear(784, 512), nn.Linear(784, 512)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(128, 784, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    g = torch.randn(128, 512)
    fast(x).backward(g)
    plain(x2).backward(g)
    torch.testing.assert_close(fast(x), plain(x2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-5)
    for p, q in zip(fast.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-4)


def test_ffnn_with_onednn_linear_trains_like_nn_linear(data_root: str) -> None:
    torch.manual_seed(0)
    fast = init_weights(FFNN(), "keras")
    plain = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.0), nn.Linear(512, 512),
                          nn.ReLU(), nn.Dropout(0.0), nn.Linear(512, 10))  # fmt: skip
    plain.load_state_dict(fast.state_dict())
    data = batches(data_root, 20)
    eager, ours = train(plain, data, lr=0.1), train(fast, data, lr=0.1)
    assert max(abs(a - b) for a, b in zip(eager, ours, strict=True)) < 1e-4 and ours[-1] < ours[0] - 1
    for p, q in zip(plain.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)
