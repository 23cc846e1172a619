"""Energy over the training steps, read from the hardware's own counters: RAPL (``/sys/class/powercap``) for the
CPU package, NVML (``nvmlDeviceGetTotalEnergyConsumption``) for an NVIDIA GPU. Where a counter is missing the
record says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer

from hwbench.measure.training_clock import Edge, TrainingClock
from hwbench.record.parts import EnergyFigures

POWERCAP = Path("/sys/class/powercap")
MIN_ENERGY_SECONDS = 1.0  # NVML's counter updates every 20-100 ms, RAPL's every ~1 ms: shorter windows are coarse


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


class Energy(Callback):
    """CPU and GPU energy over the training steps only (validation excluded, as in the training clock); per image
    over the images this process trained on in the finished epochs (the clock counts them)."""

    def __init__(self, clock: TrainingClock) -> None:
        self.clock = clock
        clock.listen(self.at_edge)  # read at the clock's marks, after its sync
        self.device = torch.device("cpu")
        self.rapl = Rapl()
        self.nvml: Nvml | None = None
        self.seconds, self.cpu_joules, self.gpu_joules = 0.0, 0.0, 0.0
        self.start: tuple[float, list[int] | None, int | None] | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.device = trainer.strategy.root_device
        if stage == "fit" and self.device.type == "cuda":
            self.nvml = Nvml(self.device)

    def at_edge(self, edge: Edge, reading: float) -> None:
        counters = (reading, self.rapl.read(), self.nvml.read() if self.nvml else None)
        if edge == "start":
            self.start = counters
            return
        if self.start is None:
            return
        (t0, cpu0, gpu0), (t1, cpu1, gpu1) = self.start, counters
        self.seconds += t1 - t0
        if cpu0 is not None and cpu1 is not None:
            self.cpu_joules += self.rapl.joules(cpu0, cpu1)
        if gpu0 is not None and gpu1 is not None:
            self.gpu_joules += (gpu1 - gpu0) / 1e3
        self.start = None

    def figures(self) -> EnergyFigures:
        r: dict[str, Any] = {"energy_seconds": self.seconds, "energy_precise": self.seconds >= MIN_ENERGY_SECONDS}
        if self.rapl.unavailable:
            r["cpu_energy_unavailable"] = self.rapl.unavailable
        elif self.seconds:
            r["cpu_energy_j"] = self.cpu_joules  # the whole package: other processes' work counts too
        if self.nvml is not None and self.nvml.unavailable:
            r["gpu_energy_unavailable"] = self.nvml.unavailable
        elif self.nvml is not None and self.seconds:
            r["gpu_energy_j"] = self.gpu_joules
        joules = r.get("gpu_energy_j", r.get("cpu_energy_j"))
        if joules:
            r["energy_source"] = "gpu" if "gpu_energy_j" in r else "cpu"
            r["average_watts"] = joules / self.seconds
            r["samples_per_joule"] = self.clock.trained_samples / joules
        return EnergyFigures(**r)
