"""The paper's two networks (Arora & Bhatia, section III), as plain ``nn.Module``s."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def keep_mask(x: Tensor, p: float) -> Tensor:
    """A CPU Bernoulli(1 - p) mask (True: keep) shaped and laid out like ``x``, drawn from random bytes: exact
    when p is a multiple of 1/256.

    torch's CPU ``bernoulli_`` draws one 32-bit number per element on one core (8 ms for the CNN's
    1.2M-element mask, 15% of its step); 64 random bits give 8 elements, and keeping a byte when it is
    at least 256 p keeps it with probability exactly 1 - p (0.25 -> 64, 0.5 -> 128). Any other p: torch's.
    """
    mask = torch.empty_like(x, dtype=torch.bool)  # x's memory layout (channels-last in the CNN): x * mask stays fast
    threshold = p * 256
    if not threshold.is_integer():
        return mask.bernoulli_(1 - p)
    n = x.numel()
    words = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-(2**63), None)  # all 64 bits uniform
    torch.ge(words.view(torch.uint8)[:n], int(threshold), out=mask.as_strided((n,), (1,)))  # in memory order
    return mask


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the same function (x * mask / (1 - p), mask ~ Bernoulli(1 - p)), cheaper masks on a CPU.

    Only the random stream differs. On a GPU, under ``torch.compile`` or in place: torch's own (fused) dropout.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or self.inplace or torch.compiler.is_compiling():
            return F.dropout(x, self.p, self.training, self.inplace)
        if self.p == 1:
            return x * 0
        noise = keep_mask(x, self.p).to(x.dtype).div_(1 - self.p)  # as aten's dropout: mask / (1 - p)
        return x * noise


_HAS_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias by oneDNN's inner product, on dense tensors (the op Inductor uses on CPUs)."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight.contiguous(), bias, "none", [], "")


class _OneDNNLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return _onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        return (
            _onednn_linear(grad, weight.t()) if need_x else None,  # grad @ W
            _onednn_linear(grad.t(), x.t()) if need_w else None,  # grad.T @ x
            grad.sum(0) if need_b else None,
        )


class Linear(nn.Linear):
    """``nn.Linear`` whose float32 CPU matmuls (forward and backward) run on oneDNN instead of MKL.

    MKL's sgemm does not use AVX-512 on AMD CPUs: on the development VM (AMD EPYC, 2 threads) the FFNN's
    first layer ran at 180 GFLOP/s through ``F.linear`` (MKL) and 400 through oneDNN.
    The same products, summed in another order (float32 rounding). Elsewhere (GPU, other dtypes,
    autocast, ``torch.compile``): ``nn.Linear``.
    """

    def forward(self, x: Tensor) -> Tensor:
        if (
            x.device.type != "cpu" or x.dim() != 2 or x.dtype != torch.float32 or self.weight.dtype != torch.float32
            or torch.is_autocast_enabled("cpu") or torch.compiler.is_compiling() or not _HAS_ONEDNN_LINEAR
        ):  # fmt: skip
            return super().forward(x)
        return _OneDNNLinearFn.apply(x, self.weight, self.bias)


class FFNN(nn.Sequential):
    """784 -> 512 -> 512 -> 10, ReLU between; softmax lives in the loss."""

    def __init__(self, hidden: int = 512, dropout: float = 0.0, num_classes: int = 10) -> None:
        super().__init__(
            nn.Flatten(),
            Linear(28 * 28, hidden), nn.ReLU(), nn.Dropout(dropout),
            Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            Linear(hidden, num_classes),
        )  # fmt: skip


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that runs channels-last (NHWC) on a CPU, where oneDNN's kernels and the max-pool after it
    are vectorized over channels. Parameters and state dict stay as ``nn.Conv2d``'s (the weight is reordered
    per step: 18K numbers); GPUs keep the layout they were measured with."""

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            return super().forward(x)
        # clone, not contiguous: with one input channel a weight counts as channels-last already, and
        # oneDNN would take the first convolution in NCHW (then reorder its 2.7M-number output)
        weight = self.weight.clone(memory_format=torch.channels_last)
        return self._conv_forward(x.contiguous(memory_format=torch.channels_last), weight, self.bias)


class CNN(nn.Sequential):
    """The Keras MNIST CNN: two 3x3 convs, 2x2 max-pool, a 128-unit dense layer.

    ``dropout``: the rates after the pool and after the dense layer (Keras' example: 0.25, 0.5); one
    number sets both, 0 removes it.

    Built for a CPU's speed without changing the function (tests check it against the textbook stack):
    on a CPU its convolutions run channels-last (``Conv2d``); the second ReLU comes after the pool
    (max-pool and ReLU commute, forward and gradient, ties included), which pays in channels-last; the
    ``Dropout`` draws its masks from random bytes; the dense layers' matmuls run on oneDNN (``Linear``).
    """

    def __init__(self, dropout: float | Sequence[float] = (0.25, 0.5), num_classes: int = 10) -> None:
        after_pool, after_dense = (dropout, dropout) if isinstance(dropout, (int, float)) else dropout
        super().__init__(
            Conv2d(1, 32, 3), nn.ReLU(),
            Conv2d(32, 64, 3), nn.MaxPool2d(2), nn.ReLU(),
            Dropout(after_pool),
            nn.Flatten(),
            Linear(64 * 12 * 12, 128), nn.ReLU(), Dropout(after_dense),
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
