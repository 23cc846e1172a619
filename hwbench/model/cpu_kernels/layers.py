"""``nn.Linear``, ``nn.Conv2d`` and ``nn.Dropout`` with a second way to run the same function on a CPU.

Each layer's ``kernel`` names the way it runs: ``"torch"`` (torch's own layer, the default) or the
alternative its class names in ``KERNELS``. Parameters, state dict and function are those of the torch layer;
only the summation order (float32 rounding), the memory layout or the random stream differ. On a GPU, under
``torch.compile`` or where the alternative does not apply, every layer runs torch's own.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hwbench.execution.cpu_gemms import ONEDNN, onednn_available, onednn_linear

TORCH = "torch"


class KernelLayer(nn.Module):
    """A layer with several CPU kernels: ``kind`` names the choice (one per kind and net), ``KERNELS`` its
    candidates, ``kernel`` the one in use."""

    kind: ClassVar[str]
    KERNELS: ClassVar[tuple[str, ...]]
    kernel: str = TORCH

    def kernels(self) -> tuple[str, ...]:
        """The candidates that apply to this layer as configured (``torch`` always does)."""
        return self.KERNELS


def keep_mask(x: Tensor, p: float) -> Tensor:
    """A CPU Bernoulli(1 - p) mask (True: keep) shaped and laid out like ``x``, drawn from random bytes: exact
    when p is a multiple of 1/256.

    64 random bits give 8 elements where ``bernoulli_`` draws one 32-bit number per element on one core; a
    byte kept when it is at least 256 p is kept with probability exactly 1 - p. Any other p: torch's.
    """
    mask = torch.empty_like(x, dtype=torch.bool)  # x's memory layout (channels-last in the CNN): x * mask stays fast
    threshold = p * 256
    if not threshold.is_integer():
        return mask.bernoulli_(1 - p)
    n = x.numel()
    words = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-(2**63), None)  # all 64 bits uniform
    torch.ge(words.view(torch.uint8)[:n], int(threshold), out=mask.as_strided((n,), (1,)))  # in memory order
    return mask


class Dropout(nn.Dropout, KernelLayer):
    """``nn.Dropout``; ``kernel="bytes"`` draws its CPU masks from random bytes (``keep_mask``).

    The same function, x * mask / (1 - p) with mask ~ Bernoulli(1 - p); only the random stream differs.
    """

    kind = "dropout"
    KERNELS = (TORCH, "bytes")

    def kernels(self) -> tuple[str, ...]:
        exact = 0 < self.p < 1 and (self.p * 256).is_integer() and not self.inplace
        return self.KERNELS if exact else (TORCH,)

    def forward(self, x: Tensor) -> Tensor:
        if (
            self.kernel == TORCH or not self.training or self.p == 0 or x.device.type != "cpu" or self.inplace
            or torch.compiler.is_compiling()
        ):  # fmt: skip
            return F.dropout(x, self.p, self.training, self.inplace)
        if self.p == 1:
            return x * 0
        return x * self.noise(x)

    def noise(self, x: Tensor) -> Tensor | None:
        """The mask / (1 - p) a training forward multiplies ``x`` by, drawn as that forward draws it (the same
        random stream): what a step that applies the mask itself uses (execution=fused on a CPU); None at p=0."""
        if self.p == 0:
            return None
        if self.kernel == TORCH or self.p == 1:  # aten's CPU dropout: empty_like(x).bernoulli_(1 - p).div_(1 - p)
            return torch.empty_like(x).bernoulli_(1 - self.p).div_(1 - self.p) if self.p < 1 else torch.zeros_like(x)
        return keep_mask(x, self.p).to(x.dtype).div_(1 - self.p)  # as aten's dropout: mask / (1 - p)


class _OneDNNLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        return (
            onednn_linear(grad, weight.t()) if need_x else None,  # grad @ W, the transposed view as it is
            onednn_linear(grad.t(), x.t()) if need_w else None,  # grad.T @ x
            grad.sum(0) if need_b else None,
        )


class Linear(nn.Linear, KernelLayer):
    """``nn.Linear``; ``kernel="onednn"`` runs its float32 CPU matmuls (forward and backward) on oneDNN's inner
    product instead of torch's BLAS (MKL on x86 builds): which is faster depends on the CPU.

    The same products, summed in another order (float32 rounding). Other dtypes, autocast: torch's.
    """

    kind = "linear"
    KERNELS = (TORCH, ONEDNN)

    def kernels(self) -> tuple[str, ...]:
        return self.KERNELS if onednn_available() else (TORCH,)

    def forward(self, x: Tensor) -> Tensor:
        if (
            self.kernel == TORCH or x.device.type != "cpu" or x.dim() != 2 or x.dtype != torch.float32
            or self.weight.dtype != torch.float32 or torch.is_autocast_enabled("cpu") or torch.compiler.is_compiling()
            or not onednn_available()
        ):  # fmt: skip
            return super().forward(x)
        return _OneDNNLinearFn.apply(x, self.weight, self.bias)


class Conv2d(nn.Conv2d, KernelLayer):
    """``nn.Conv2d``; ``kernel="channels_last"`` runs it channels-last (NHWC) on a CPU, where oneDNN's kernels
    and a max-pool after it are vectorized over channels. Parameters and state dict stay ``nn.Conv2d``'s (the
    weight is reordered per step: 18K numbers)."""

    kind = "conv2d"
    KERNELS = (TORCH, "channels_last")

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel == TORCH or x.device.type != "cpu":
            return super().forward(x)
        # clone, not contiguous: with one input channel a weight counts as channels-last already, and
        # oneDNN would take the first convolution in NCHW (then reorder its 2.7M-number output)
        weight = self.weight.clone(memory_format=torch.channels_last)
        return self._conv_forward(x.contiguous(memory_format=torch.channels_last), weight, self.bias)
