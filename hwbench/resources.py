"""What a run costs besides time: peak memory, energy over the training steps, and how busy the GPU was.

Energy is read from the hardware's own counters: RAPL (``/sys/class/powercap``) for the CPU package, NVML
(``nvmlDeviceGetTotalEnergyConsumption``) for an NVIDIA GPU. Where a counter is missing the record says why.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer

from hwbench.devices import synchronize

POWERCAP = Path("/sys/class/powercap")
MIN_ENERGY_SECONDS = 1.0  # NVML's counter updates every 20-100 ms, RAPL's every ~1 ms: shorter windows are coarse
BUSY_PROFILED_STEP = -2  # the first epoch's second-to-last Lightning step: warmed up, and outside steady state


def reset_peak_rss() -> bool:
    """Start the process's peak-RSS count afresh (Linux: /proc/self/clear_refs), so a job of a multirun
    reports its own peak, not the process's."""
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


class Rapl:
    """The CPU packages' energy counters (``intel-rapl:N``; AMD's kernels expose theirs there too)."""

    def __init__(self) -> None:
        self.domains = sorted(POWERCAP.glob("intel-rapl:[0-9]")) if POWERCAP.is_dir() else []
        self.unavailable = None if self.domains else f"no RAPL counters: {POWERCAP} does not exist or lists none"
        for domain in self.domains:
            try:
                (domain / "energy_uj").read_text()
            except OSError as err:  # root only since Linux 5.10
                self.unavailable = f"cannot read {domain / 'energy_uj'}: {err.strerror} (root only on most kernels)"

    def read(self) -> list[int] | None:
        return None if self.unavailable else [int((d / "energy_uj").read_text()) for d in self.domains]

    def joules(self, start: list[int], end: list[int]) -> float:
        total = 0
        for domain, a, b in zip(self.domains, start, end, strict=True):
            wrap = int((domain / "max_energy_range_uj").read_text())
            total += b - a if b >= a else b + wrap - a
        return total / 1e6


class Nvml:
    """One GPU's energy counter (millijoules since the driver loaded), through nvidia-ml-py."""

    def __init__(self, device: torch.device) -> None:
        self.handle: Any = None
        self.unavailable: str | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            uuid = str(torch.cuda.get_device_properties(device).uuid)
            self.handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except Exception as err:  # no driver, an old GPU, a VM without the counter
            self.handle, self.unavailable = None, f"NVML energy counter unavailable: {err}"

    def read(self) -> int | None:
        import pynvml

        return None if self.handle is None else pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)


class ResourceMonitor(Callback):
    """Peak host RSS and GPU memory over the run; CPU and GPU energy over the training steps only
    (validation excluded, as in the training clock); the GPU's busy fraction in one profiled Lightning step
    of the warm-up epoch."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.device = torch.device("cpu")
        self.rapl = Rapl()
        self.nvml: Nvml | None = None
        self.seconds, self.cpu_joules, self.gpu_joules = 0.0, 0.0, 0.0
        self.start: tuple[float, list[int] | None, int | None] | None = None
        self.profiler: torch.profiler.profile | None = None
        self.rss_reset = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.device = trainer.strategy.root_device
        if stage == "fit":
            self.rss_reset = reset_peak_rss()
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
                self.nvml = Nvml(self.device)

    def _read(self) -> tuple[float, list[int] | None, int | None]:
        synchronize(self.device)
        return time.perf_counter(), self.rapl.read(), self.nvml.read() if self.nvml else None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start = self._read()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._profiles(trainer, batch_idx):
            synchronize(self.device)
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
            self.profiler.__enter__()
            self.profile_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.profiler is not None:
            synchronize(self.device)
            wall_us = (time.perf_counter() - self.profile_start) * 1e6
            self.profiler.__exit__(None, None, None)
            kernel_us = sum(e.self_device_time_total for e in self.profiler.key_averages())
            self.results["gpu_busy_percent"] = min(100.0, 100 * kernel_us / wall_us)
            self.profiler = None
        if batch_idx + 1 == trainer.num_training_batches and self.start is not None:
            (t0, cpu0, gpu0), (t1, cpu1, gpu1) = self.start, self._read()
            self.seconds += t1 - t0
            if cpu0 is not None and cpu1 is not None:
                self.cpu_joules += self.rapl.joules(cpu0, cpu1)
            if gpu0 is not None and gpu1 is not None:
                self.gpu_joules += (gpu1 - gpu0) / 1e3
            self.start = None

    def _profiles(self, trainer: Trainer, batch_idx: int) -> bool:
        groups = trainer.num_training_batches
        return (self.device.type == "cuda" and trainer.current_epoch == 0 and (trainer.max_epochs or 1) > 1
                and groups >= 3 and batch_idx == groups + BUSY_PROFILED_STEP)  # fmt: skip

    def summarize(self, samples: int) -> dict[str, Any]:
        """The figures for the results record (call once the run is over); ``samples``: the images this
        process trained on in the finished epochs, the window the energy covers."""
        r: dict[str, Any] = {"peak_host_rss_mb": peak_rss_mb(), "peak_host_rss_scope": "job" if self.rss_reset
                             else "process (this OS cannot reset the peak)"}  # fmt: skip
        r["energy_seconds"] = self.seconds
        r["energy_precise"] = self.seconds >= MIN_ENERGY_SECONDS
        if self.rapl.unavailable:
            r["cpu_energy_unavailable"] = self.rapl.unavailable
        elif self.seconds:
            r["cpu_energy_j"] = self.cpu_joules  # the whole package: other processes' work counts too
        if self.device.type == "cuda":
            r["gpu_peak_allocated_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
            r["gpu_peak_reserved_mb"] = torch.cuda.max_memory_reserved(self.device) / 2**20
            if self.nvml is not None and self.nvml.unavailable:
                r["gpu_energy_unavailable"] = self.nvml.unavailable
            elif self.seconds:
                r["gpu_energy_j"] = self.gpu_joules
        joules = r.get("gpu_energy_j", r.get("cpu_energy_j"))
        if joules:
            r["energy_source"] = "gpu" if "gpu_energy_j" in r else "cpu"
            r["average_watts"] = joules / self.seconds
            r["samples_per_joule"] = samples / joules
        return r | self.results
