"""Peak memory over the job: the host process's resident set, and the GPU's caching allocator."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch
from lightning import Callback, LightningModule, Trainer

from hwbench.record.parts import MemoryFigures


def reset_peak_rss() -> bool:
    """Start the process's peak-RSS count afresh (Linux: /proc/self/clear_refs), so the job reports its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


class PeakMemory(Callback):
    """Peak host RSS and GPU memory, counted from the start of fitting."""

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.rss_reset = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.device = trainer.strategy.root_device
        if stage == "fit":
            self.rss_reset = reset_peak_rss()
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)

    def figures(self) -> MemoryFigures:
        scope = "job" if self.rss_reset else "process (this OS cannot reset the peak)"
        if self.device.type != "cuda":
            return MemoryFigures(peak_host_rss_mb=peak_rss_mb(), peak_host_rss_scope=scope)
        return MemoryFigures(
            peak_host_rss_mb=peak_rss_mb(), peak_host_rss_scope=scope,
            gpu_peak_allocated_mb=torch.cuda.max_memory_allocated(self.device) / 2**20,
            gpu_peak_reserved_mb=torch.cuda.max_memory_reserved(self.device) / 2**20,
        )  # fmt: skip
