"""How busy the GPU was: its time running kernels over the wall time, measured without slowing the step.

CUDA graphs hide their kernels from a profiler and a profiler near replays is unsafe (pytorch/pytorch#75504),
so graphed strategies are timed by CUDA events around their replays; eager ones by torch's profiler.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer

from hwbench.devices import synchronize
from hwbench.execution import Compiled, Execution, Graph
from hwbench.measure.training_clock import Edge, TrainingClock
from hwbench.record.parts import BusyFigures

BUSY_PROFILED_STEP = -2  # the profiler's step: the first epoch's second-to-last, warmed up and outside steady state


class GpuBusy(Callback):
    """How busy the GPU was in the first (warm-up) epoch, by the one method the execution strategy allows:
    events around its graph replays over the whole epoch, else torch's profiler (CUPTI) over one Lightning
    step (never near a CUDA graph), else no figure and the reason. Off the GPU: nothing."""

    def __init__(self, execution: Execution, clock: TrainingClock) -> None:
        self.timer = execution.timer if isinstance(execution, Graph) else None
        self.unavailable = (
            f"compile mode {execution.mode} replays CUDA graphs inside torch.compile, where no probe may look"
            if isinstance(execution, Compiled) and execution.replays_inside_compile
            else None
        )
        self.method = ("CUDA events around graph replays, first epoch" if self.timer is not None
                       else "torch profiler (CUPTI kernel time), one Lightning step of the first epoch")  # fmt: skip
        self.device = torch.device("cpu")
        self.percent: float | None = None
        self.profiler: torch.profiler.profile | None = None
        self.wall_start = 0.0
        self.starts, self.epochs = 0, 1  # training epochs started so far; of the run
        clock.listen(self.at_edge)  # the graph replays' wall time: the clock's readings, after its sync

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.device, self.epochs = trainer.strategy.root_device, trainer.max_epochs or 1

    def watches(self, trainer: Trainer) -> bool:
        on = self.device.type == "cuda" and self.unavailable is None
        return on and trainer.current_epoch == 0 and (trainer.max_epochs or 1) > 1

    def at_edge(self, edge: Edge, reading: float) -> None:
        self.starts += edge == "start"
        on = self.device.type == "cuda" and self.unavailable is None and self.epochs > 1
        if self.timer is None or not on or self.starts != 1:  # the first (warm-up) epoch only
            return
        if edge == "start":
            self.timer.armed, self.wall_start = True, reading
        elif self.timer.armed:
            self.percent = min(100.0, 100 * self.timer.seconds() / (reading - self.wall_start))

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        groups = trainer.num_training_batches
        if self.timer is None and self.watches(trainer) and groups >= 3 and batch_idx == groups + BUSY_PROFILED_STEP:
            synchronize(self.device)
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
            self.profiler.__enter__()
            self.wall_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.profiler is not None:  # one Lightning step inside the epoch, away from its edges: its own sync
            synchronize(self.device)
            wall_us = (time.perf_counter() - self.wall_start) * 1e6
            self.profiler.__exit__(None, None, None)
            kernel_us = sum(e.self_device_time_total for e in self.profiler.key_averages())
            self.percent = min(100.0, 100 * kernel_us / wall_us)
            self.profiler = None

    def figures(self) -> BusyFigures:
        if self.device.type != "cuda":
            return BusyFigures()
        if self.percent is not None:
            return BusyFigures(gpu_busy_percent=self.percent, gpu_busy_method=self.method)
        reason = self.unavailable or "the run has a single epoch: busy is measured in the warm-up epoch only"
        return BusyFigures(gpu_busy_unavailable=reason)
