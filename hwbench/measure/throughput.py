"""Throughput between two marks of the training clock: samples/s, batches/s, FLOP/s and MFU, all ranks together.

FLOPs per image come from torch's flop counter (through Lightning's ``measure_flops``); the rates are the marks'
differences over their seconds; MFU divides by the device's datasheet peak where one is known (``peaks.py``), and
on every device by its measured matmul peak (``matmul_peak.py``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from lightning import Callback, LightningModule, Trainer
from lightning.fabric.utilities.throughput import measure_flops
from torch import nn

from hwbench.measure.matmul_peak import forget_peak, matmul_peak
from hwbench.measure.peaks import device_peak, precision_class
from hwbench.measure.training_clock import Mark
from hwbench.record.parts import Flops, MeasuredPeak, Peak, Rates

INPUT_SHAPE = (1, 28, 28)


def flops_per_sample(net: nn.Module) -> Flops:
    """Forward and training (forward + backward) FLOPs for one image, from torch's flop counter."""
    meta = copy.deepcopy(net).to("meta")
    x = torch.empty(2, *INPUT_SHAPE, device="meta")
    y = torch.zeros(2, dtype=torch.long, device="meta")
    forward = measure_flops(meta, lambda: meta(x))
    train = measure_flops(meta, lambda: meta(x), lambda logits: F.cross_entropy(logits, y))
    return Flops(forward=forward // 2, train=train // 2)


class FlopsAndPeak(Callback):
    """The net's FLOPs per image and the device's peak: what turns two marks of the clock into rates and MFU."""

    def __init__(self, flops: Flops, precision: str, probe: bool = True) -> None:
        self.flops, self.precision, self.probe = flops, precision, probe
        self.peak: Peak | None = None
        self.mfu_unavailable: str | None = None
        self.measured: MeasuredPeak | str | None = None  # or why there is none
        self.world_size, self.device, self.kind, self.keeper = 1, torch.device("cpu"), "", False  # set up below

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.world_size, self.device = trainer.world_size, trainer.strategy.root_device
        peak = device_peak(self.device, self.precision)
        self.peak, self.mfu_unavailable = (None, peak) if isinstance(peak, str) else (peak, None)
        if self.measured is None and not self.probe:
            self.measured = "not measured (~measure.peak)"
        if self.measured is None:  # once per job (setup runs again for the test); rank 0 probes, the others wait
            self.kind = precision_class(self.precision, torch.get_float32_matmul_precision())
            self.keeper = trainer.is_global_zero  # the rank that probed, and deletes a wrong kept peak
            self.measured = trainer.strategy.broadcast(matmul_peak(self.device, self.kind) if self.keeper else None)

    @property
    def measured_peak(self) -> MeasuredPeak | None:
        return self.measured if isinstance(self.measured, MeasuredPeak) else None

    def drop_beaten_peak(self, start: Mark, end: Mark) -> None:
        """A measured peak that the training beat between two marks is no peak (probed while the machine was busy,
        or the machine changed since): it leaves the record, and its kept file is deleted."""
        peak = self.measured_peak
        if peak is None or end.seconds <= start.seconds:
            return
        reached = (self.rates(start, end).flops_per_sec or 0.0) / self.world_size  # one device's
        if reached <= peak.flops_per_sec:
            return
        self.measured = (
            f"the training reached {reached / 1e9:,.1f} GFLOP/s, above the measured matmul peak "
            f"({peak.flops_per_sec / 1e9:,.1f} GFLOP/s, probed {peak.measured_at}): that peak is wrong"
        )
        if self.keeper:  # read from the cache, or kept there by this job's probe
            forget_peak(self.device, self.kind, self.measured)

    def rates(self, start: Mark, end: Mark) -> Rates:
        """Global samples/s, batches/s, FLOP/s and MFU (where the peak is known, against all the devices)."""
        w, seconds = self.world_size, max(end.seconds - start.seconds, 1e-12)
        samples = (end.samples - start.samples) * w
        flops_per_sec = self.flops.train * samples / seconds
        peak = self.measured_peak  # a peak probed on a busy machine understates the device: no MFU against it
        measured = peak.flops_per_sec * w if peak and not peak.noise else None
        datasheet = self.peak.flops_per_sec * w if self.peak else None
        return Rates(samples_per_sec=samples / seconds, batches_per_sec=(end.steps - start.steps) / seconds,
                     flops_per_sec=flops_per_sec, mfu=flops_per_sec / datasheet if datasheet else None,
                     mfu_of_measured_peak=flops_per_sec / measured if measured else None)  # fmt: skip


def scalars(prefix: str, figures: Rates) -> dict[str, float]:
    """A part's figures as TensorBoard scalars under ``prefix``."""
    return {f"{prefix}_{k}": v for k, v in figures.model_dump(exclude_none=True).items()}
