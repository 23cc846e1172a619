"""Inference speed after the test: samples/s over the test images at one batch size, and single-image latency."""

from __future__ import annotations

import itertools
import logging
import statistics
import time
from collections.abc import Callable

import torch
from lightning import Callback, LightningModule, Trainer
from torch import Tensor, nn

from hwbench.data.datamodules import InMemoryDataModule
from hwbench.devices import synchronize
from hwbench.record.parts import Flops, Inference

log = logging.getLogger(__name__)
BLOCKS, BLOCK_SECONDS = 7, 0.07  # the batch throughput: blocks of whole batches, at least a batch each


@torch.inference_mode()
def measure_inference(
    model: nn.Module, x: Tensor, batch_size: int, latency_runs: int, safe_point: Callable[[], None] = lambda: None
) -> dict[str, float]:
    """Samples/s at ``batch_size`` (the median of timed blocks of batches of ``x``, and their spread), and the
    median and p90 latency of single images, after warm-up. ``safe_point`` is called between timings, never
    inside one."""
    # here, not at import: torch.utils.benchmark imports cpp_extension, which asks CUDA for its devices (the job
    # template imports this module and must never touch a device)
    from torch.utils.benchmark import Measurement, Timer

    model.eval()
    device = x.device
    batch_size = min(batch_size, len(x))
    batches = itertools.cycle(x[: len(x) // batch_size * batch_size].split(batch_size))  # full batches only: a new
    for _ in range(2):  # shape would recompile a compiled net
        model(next(batches))
    synchronize(device)
    safe_point()
    # torch.utils.benchmark: BLOCKS blocks of whole batches, the device synchronized around each (blocked_autorange
    # sizes its blocks for microbenchmarks: a batch of seconds would be one block, with no spread)
    timer = Timer("model(next(batches))", globals={"model": model, "batches": batches},
                  num_threads=torch.get_num_threads())  # fmt: skip
    batch_seconds = timer.timeit(1).median
    number = max(1, round(BLOCK_SECONDS / max(batch_seconds, 1e-9)))
    blocks = Measurement.merge([timer.timeit(number) for _ in range(BLOCKS)])[0]
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
        "samples_per_sec": batch_size / blocks.median,
        "blocks": len(blocks.times),
        "iqr_over_median": blocks.iqr / blocks.median,
        "latency_ms_p50": statistics.median(latencies) * 1e3,
        "latency_ms_p90": deciles[-1] * 1e3,
    }


class InferenceTiming(Callback):
    """Times inference on the test images once the test is over; one device's figure: rank 0 measures it alone.
    ``safe_point`` is where a stop signal held during the timing is raised (between timings, never inside one)."""

    def __init__(
        self, data: InMemoryDataModule, flops: Flops, batch_size: int = 1024,
        latency_runs: int = 100, safe_point: Callable[[], None] = lambda: None,
    ) -> None:  # fmt: skip
        self.data, self.flops = data, flops
        self.batch_size, self.latency_runs = batch_size, latency_runs
        self.safe_point = safe_point
        self.inference: Inference | None = None

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        log.info(f"testing on {len(self.data.splits['test'][0]):,} images")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        test = getattr(pl_module, "figures", {}).get("test")
        accuracy = f" (accuracy {test.acc:.4f})" if test else ""
        log.info(f"tested{accuracy}; timing inference at batch {self.batch_size}")
        with trainer.precision_plugin.forward_context():
            x = self.data.splits["test"][0]
            figures = measure_inference(pl_module, x, self.batch_size, self.latency_runs, self.safe_point)
        self.inference = Inference(**figures, flops_per_sec=figures["samples_per_sec"] * self.flops.forward)

    def record_parts(self) -> dict[str, Inference]:
        return {"inference": self.inference} if self.inference is not None else {}
