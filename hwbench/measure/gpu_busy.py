"""How busy the GPU was: its time running kernels over the wall time, measured without slowing the step.

CUDA graphs hide their kernels from a profiler and a profiler near replays is unsafe (pytorch/pytorch#75504),
so graphed strategies are timed by CUDA events around their replays; eager ones by torch's profiler.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from lightning import Trainer

from hwbench.devices import synchronize

if TYPE_CHECKING:
    from hwbench.execution.strategy import Execution

BUSY_PROFILED_STEP = -2  # the profiler's step: the first epoch's second-to-last, warmed up and outside steady state


class BusyProbe:
    """How busy the GPU was in the first (warm-up) epoch, by the one method the execution strategy allows:
    events around its graph replays over the whole epoch, else torch's profiler (CUPTI) over one Lightning
    step (never near a CUDA graph: pytorch/pytorch#75504), else no figure and the reason."""

    def __init__(self, execution: Execution) -> None:
        self.timer = execution.busy_timer()
        self.unavailable = execution.hides_kernels()
        self.method = ("CUDA events around graph replays, first epoch" if self.timer is not None
                       else "torch profiler (CUPTI kernel time), one Lightning step of the first epoch")  # fmt: skip
        self.percent: float | None = None
        self.profiler: torch.profiler.profile | None = None
        self.wall_start = 0.0

    def watches(self, trainer: Trainer) -> bool:
        return self.unavailable is None and trainer.current_epoch == 0 and (trainer.max_epochs or 1) > 1

    def epoch_start(self, trainer: Trainer, now: float) -> None:
        if self.timer is not None and self.watches(trainer):
            self.timer.armed, self.wall_start = True, now

    def epoch_end(self, now: float) -> None:
        """``now``: read after synchronizing the device."""
        if self.timer is not None and self.timer.armed:
            self.percent = min(100.0, 100 * self.timer.seconds() / (now - self.wall_start))

    def batch_start(self, trainer: Trainer, batch_idx: int, device: torch.device) -> None:
        groups = trainer.num_training_batches
        if self.timer is None and self.watches(trainer) and groups >= 3 and batch_idx == groups + BUSY_PROFILED_STEP:
            synchronize(device)
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
            self.profiler.__enter__()
            self.wall_start = time.perf_counter()

    def batch_end(self, device: torch.device) -> None:
        if self.profiler is not None:
            synchronize(device)
            wall_us = (time.perf_counter() - self.wall_start) * 1e6
            self.profiler.__exit__(None, None, None)
            kernel_us = sum(e.self_device_time_total for e in self.profiler.key_averages())
            self.percent = min(100.0, 100 * kernel_us / wall_us)
            self.profiler = None

    def figures(self) -> dict[str, Any]:
        if self.percent is not None:
            return {"gpu_busy_percent": self.percent, "gpu_busy_method": self.method}
        reason = self.unavailable or "the run has a single epoch: busy is measured in the warm-up epoch only"
        return {"gpu_busy_unavailable": reason}
