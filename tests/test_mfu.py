"""MFU's denominator: the dense peak of the GPU torch names, at the precision the run's matmuls execute in."""

import pytest

from hwbench.measure.peaks import GPU_PEAKS, peak_flops, precision_class


@pytest.mark.parametrize(
    ("torch_name", "model"),
    [
        ("NVIDIA H200", "NVIDIA H200 SXM"),  # what torch calls the H200 that Lightning's table misses
        ("NVIDIA H200 NVL", "NVIDIA H200 NVL"),
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"),
        ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
        ("NVIDIA H100 NVL", "NVIDIA H100 NVL"),
        ("NVIDIA B200", "NVIDIA B200"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100"),
        ("NVIDIA A100 80GB PCIe", "NVIDIA A100"),
        ("NVIDIA L40S", "NVIDIA L40S"),
        ("NVIDIA L4", "NVIDIA L4"),
        ("NVIDIA A10G", "NVIDIA A10G"),
        ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"),
        ("AMD Instinct MI300X", "AMD Instinct MI300X"),
    ],
)
def test_torch_device_names_find_their_gpu(torch_name: str, model: str) -> None:
    (row,) = [p for p in GPU_PEAKS if p.name == model]
    for precision in ("fp32", "tf32", "bf16", "fp16"):
        flops, source = peak_flops(torch_name, precision)
        assert flops == getattr(row, precision) * 1e12 and source == row.source


def test_peaks_are_dense_and_ordered() -> None:
    for row in GPU_PEAKS:  # tensor cores never lose to plain FP32; 16-bit never to TF32
        assert row.fp32 <= row.tf32 <= row.bf16 == row.fp16, row.name
        assert "datasheet" in row.source or "whitepaper" in row.source
    h200 = peak_flops("NVIDIA H200", "bf16")[0]
    assert h200 == pytest.approx(989.5e12)  # the dense rate, not the 1,979 TFLOP/s printed "with sparsity"


def test_an_unknown_gpu_gets_no_peak_and_the_reason() -> None:
    flops, reason = peak_flops("NVIDIA GeForce GTX 1660 Ti", "fp32")
    assert flops is None and "no dense peak known for 'NVIDIA GeForce GTX 1660 Ti'" in reason


@pytest.mark.parametrize(
    ("precision", "matmul", "cls"),
    [("32", "highest", "fp32"), ("32", "high", "tf32"), ("32", "medium", "tf32"), ("bf16-mixed", "highest", "bf16"),
     ("16-mixed", "high", "fp16")],
)  # fmt: skip
def test_the_peak_follows_what_the_matmuls_run_as(precision: str, matmul: str, cls: str) -> None:
    assert precision_class(precision, matmul) == cls
