"""oneDNN's inner product on dense CPU tensors: the second way to run a dense layer's GEMMs, beside torch's BLAS.

Which is faster depends on the CPU (on an AMD EPYC Zen 5, MKL's sgemm ran the FFNN's GEMMs at about 200 GFLOP/s and
oneDNN's at 410-450; on a Zen 4 they were within 5-25% of each other), so the CPU kernel choice measures it
(``device.cpu_kernels.linear``) and eager's Linear layers and the fused CPU step both run what it chose.
"""

from __future__ import annotations

import torch
from torch import Tensor

ONEDNN = "onednn"  # the kernel's name in device.cpu_kernels.linear and the record


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, relu: bool = False) -> Tensor:
    """``x @ weight.T + bias`` (then ReLU), a new contiguous tensor, by the op Inductor uses on CPUs. The operands may
    be strided views (``grad.t()``): oneDNN reorders them into its blocked layout itself, which it does to a
    contiguous weight too, so a transposed view costs nothing over a laid-out one where a copy first would (a
    512 x 512 weight on a Zen 5, 2 threads: 170 us either way, 283 us with ``.contiguous()``)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu" if relu else "none", [], "")
