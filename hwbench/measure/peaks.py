"""The dense peak FLOP/s of the GPUs hwbench knows, per precision, from each vendor's datasheet: MFU's denominator.

Datasheets print tensor-core rates "with sparsity" (2:4 structured sparsity, twice the dense rate); training
these networks is dense, so every figure here is the dense one. Lightning's table is not used: it matches an
H200 only as "h200 sxm1" while torch names it "NVIDIA H200", and lists its sparse rates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from hwbench.record.parts import Peak


@dataclass(frozen=True)
class GpuPeaks:
    """One GPU model: its dense peaks in TFLOP/s, and where they come from."""

    pattern: str  # matched against torch.cuda.get_device_name(), case-insensitive
    name: str
    fp32: float
    tf32: float
    bf16: float
    fp16: float
    source: str


# most specific first: "H100 NVL" before "H100"
GPU_PEAKS = (
    GpuPeaks(r"H100.*NVL", "NVIDIA H100 NVL", 60.0, 417.5, 835.5, 835.5,
             "NVIDIA H100 datasheet (H100 NVL column; tensor rates halved from 'with sparsity')"),
    GpuPeaks(r"H100.*PCIe", "NVIDIA H100 PCIe", 51.0, 378.0, 756.0, 756.0,
             "NVIDIA H100 datasheet (H100 PCIe column; tensor rates halved from 'with sparsity')"),
    GpuPeaks(r"H100", "NVIDIA H100 SXM", 67.0, 494.5, 989.5, 989.5,
             "NVIDIA H100 datasheet (H100 SXM column; tensor rates halved from 'with sparsity')"),
    GpuPeaks(r"H200.*NVL", "NVIDIA H200 NVL", 60.0, 417.5, 835.5, 835.5,
             "NVIDIA H200 datasheet (H200 NVL column; tensor rates halved from 'with sparsity')"),
    GpuPeaks(r"H200", "NVIDIA H200 SXM", 67.0, 494.5, 989.5, 989.5,
             "NVIDIA H200 datasheet (H200 SXM column; tensor rates halved from 'with sparsity')"),
    GpuPeaks(r"B200", "NVIDIA B200", 75.0, 1125.0, 2250.0, 2250.0,
             "NVIDIA HGX B200 datasheet (per GPU: the 8-GPU figures over 8; tensor rates halved from sparse)"),
    GpuPeaks(r"A100", "NVIDIA A100", 19.5, 156.0, 312.0, 312.0,
             "NVIDIA A100 datasheet (SXM and PCIe alike; dense tensor rates)"),
    GpuPeaks(r"L40S", "NVIDIA L40S", 91.6, 183.0, 362.05, 362.05,
             "NVIDIA L40S datasheet (tensor rates halved from 'with sparsity')"),
    GpuPeaks(r"\bL4\b", "NVIDIA L4", 30.3, 60.0, 121.0, 121.0,
             "NVIDIA L4 datasheet (tensor rates halved from 'with sparsity')"),
    GpuPeaks(r"A10G", "NVIDIA A10G", 31.2, 62.5, 125.0, 125.0,
             "NVIDIA A10 datasheet (the A10G is AWS's A10; tensor rates halved from 'with sparsity')"),
    GpuPeaks(r"RTX 4090", "NVIDIA GeForce RTX 4090", 82.6, 82.6, 165.2, 165.2,
             "NVIDIA Ada Lovelace architecture whitepaper, appendix (16-bit rates with FP32 accumulate, dense)"),
    GpuPeaks(r"MI300X", "AMD Instinct MI300X", 163.4, 653.7, 1307.4, 1307.4,
             "AMD Instinct MI300X datasheet (dense matrix rates; FP32 is its FP32 matrix/vector rate)"),
)  # fmt: skip


def precision_class(precision: str, matmul_precision: str) -> str:
    """What the run's matmuls execute as: ``32`` is FP32 under matmul precision ``highest``, else TF32."""
    if precision == "bf16-mixed":
        return "bf16"
    if precision == "16-mixed":
        return "fp16"
    return "fp32" if matmul_precision == "highest" else "tf32"


def gpu_peaks(device_name: str) -> GpuPeaks | None:
    return next((p for p in GPU_PEAKS if re.search(p.pattern, device_name, re.IGNORECASE)), None)


def peak_flops(device_name: str, precision: str) -> tuple[float | None, str]:
    """Dense peak FLOP/s of ``device_name`` at a precision class, and its source; None and the reason when
    hwbench does not know the GPU."""
    peaks = gpu_peaks(device_name)
    if peaks is None:
        known = ", ".join(p.name for p in GPU_PEAKS)
        return None, f"no dense peak known for {device_name!r} (hwbench knows: {known}): no MFU"
    return getattr(peaks, precision) * 1e12, peaks.source


def device_peak(device: torch.device, precision: str) -> Peak | str:
    """The device's datasheet dense peak at the run's precision (``precision``: Lightning's), or why there is none."""
    if device.type != "cuda":
        return "no peak FLOP/s is known for CPUs: no MFU"
    kind = precision_class(precision, torch.get_float32_matmul_precision())
    flops, source = peak_flops(torch.cuda.get_device_name(device), kind)
    return source if flops is None else Peak(flops_per_sec=flops, precision=kind, source=source)
