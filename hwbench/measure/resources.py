"""What a run costs besides time: peak memory, energy over the training steps, and how busy the GPU was.

Energy is read from the hardware's own counters: RAPL (``/sys/class/powercap``) for the CPU package, NVML
(``nvmlDeviceGetTotalEnergyConsumption``) for an NVIDIA GPU. Where a counter is missing the record says why.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning import Callback, LightningModule, Trainer

from hwbench.devices import synchronize
from hwbench.measure.gpu_busy import BusyProbe
from hwbench.record.parts import Resources

if TYPE_CHECKING:
    from hwbench.execution.strategy import Execution
    from hwbench.measure.training_clock import BenchmarkMonitor

POWERCAP = Path("/sys/class/powercap")
MIN_ENERGY_SECONDS = 1.0  # NVML's counter updates every 20-100 ms, RAPL's every ~1 ms: shorter windows are coarse


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
    (validation excluded, as in the training clock); the GPU's busy fraction in the warm-up epoch."""

    def __init__(self, execution: Execution, counts: BenchmarkMonitor) -> None:
        self.counts = counts  # the monitor counts the images trained; energy per image divides by them
        self.device = torch.device("cpu")
        self.rapl = Rapl()
        self.nvml: Nvml | None = None
        self.busy: BusyProbe | None = None
        self.execution = execution
        self.seconds, self.cpu_joules, self.gpu_joules = 0.0, 0.0, 0.0
        self.start: tuple[float, list[int] | None, int | None] | None = None
        self.rss_reset = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.device = trainer.strategy.root_device
        if stage == "fit":
            self.rss_reset = reset_peak_rss()
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
                self.nvml = Nvml(self.device)
                self.busy = BusyProbe(self.execution)

    def _read(self) -> tuple[float, list[int] | None, int | None]:
        synchronize(self.device)
        return time.perf_counter(), self.rapl.read(), self.nvml.read() if self.nvml else None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start = self._read()
        if self.busy is not None:
            self.busy.epoch_start(trainer, self.start[0])

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.busy is not None:
            self.busy.batch_start(trainer, batch_idx, self.device)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.busy is not None:
            self.busy.batch_end(self.device)
        if batch_idx + 1 == trainer.num_training_batches and self.start is not None:
            (t0, cpu0, gpu0), (t1, cpu1, gpu1) = self.start, self._read()
            self.seconds += t1 - t0
            if cpu0 is not None and cpu1 is not None:
                self.cpu_joules += self.rapl.joules(cpu0, cpu1)
            if gpu0 is not None and gpu1 is not None:
                self.gpu_joules += (gpu1 - gpu0) / 1e3
            if self.busy is not None:
                self.busy.epoch_end(t1)
            self.start = None

    def record_parts(self) -> dict[str, Resources]:
        """The record's resources part (once the run is over); energy per image over the images this process
        trained on in the finished epochs, the window the energy covers."""
        samples = self.counts.trained_samples
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
            if self.busy is not None:
                r |= self.busy.figures()
        joules = r.get("gpu_energy_j", r.get("cpu_energy_j"))
        if joules:
            r["energy_source"] = "gpu" if "gpu_energy_j" in r else "cpu"
            r["average_watts"] = joules / self.seconds
            r["samples_per_joule"] = samples / joules
        return {"resources": Resources(**r)}
