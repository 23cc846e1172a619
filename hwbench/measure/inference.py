"""Inference speed: samples/s over the test images at one batch size, and single-image latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from hwbench.devices import synchronize


@torch.inference_mode()
def measure_inference(
    model: nn.Module, x: Tensor, batch_size: int, latency_runs: int, safe_point: Callable[[], None] = lambda: None
) -> dict[str, float]:
    """Samples/s over ``x`` at ``batch_size``, and the median and p90 latency of single images, after warm-up.
    ``safe_point`` is called between timings, never inside one."""
    model.eval()
    device = x.device
    batch_size = min(batch_size, len(x))
    timed = x[: len(x) // batch_size * batch_size]  # full batches only: a new shape would recompile a compiled net
    for warm in timed.split(batch_size)[:2]:
        model(warm)
    synchronize(device)
    safe_point()
    start = time.perf_counter()
    for b in timed.split(batch_size):
        model(b)
    synchronize(device)
    samples_per_sec = len(timed) / (time.perf_counter() - start)
    safe_point()
    for i in range(10):
        model(x[i : i + 1])
    latencies = []
    for i in range(latency_runs):
        safe_point()
        synchronize(device)
        start = time.perf_counter()
        model(x[i : i + 1])
        synchronize(device)
        latencies.append(time.perf_counter() - start)
    deciles = statistics.quantiles(latencies, n=10)
    return {
        "batch_size": batch_size,
        "samples_per_sec": samples_per_sec,
        "latency_ms_p50": statistics.median(latencies) * 1e3,
        "latency_ms_p90": deciles[-1] * 1e3,
    }
