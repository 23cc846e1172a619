"""The training clock: seconds of training (validation excluded) read only where the device agrees with it.

Lightning's ``ThroughputMonitor`` synchronizes the GPU after every step, which would slow down the very thing it
measures; this clock synchronizes only where it is read: epoch edges, the end of warm-up and the steady
sub-windows' edges. It is the one place that does: what other figures read at an epoch's edges (energy, the GPU's
busy time) they read when the clock tells them, right after its sync.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import torch
from lightning import Callback, LightningModule, Trainer

from hwbench.devices import synchronize
from hwbench.measure.stability import edges, windows_per_epoch


class Mark(NamedTuple):
    """A point in training: seconds of training so far (validation excluded), optimizer steps, samples (this
    rank's: every rank takes batches of the same size, so the global count is this times the world size)."""

    seconds: float
    steps: int
    samples: int


START = Mark(0.0, 0, 0)
Edge = Literal["start", "end"]  # of a training epoch


class TrainingClock(Callback):
    """Marks at each epoch's start and end, and where warm-up ends: the first epoch when there are several,
    else the first ``warmup_steps`` optimizer steps of the only epoch (rounded up to a whole Lightning step); and
    in steady state where each sub-window ends (hwbench/measure/stability.py)."""

    def __init__(self, warmup_steps: int = 50) -> None:
        self.warmup_steps = warmup_steps
        self.device = torch.device("cpu")
        self.barrier: Any = None  # the strategy's, under DDP
        self.max_epochs, self.world_size = 1, 1
        self.reading = 0.0  # time.perf_counter() at the last mark
        self.steps, self.samples = 0, 0
        self.epoch_started_at, self.epoch_start = 0.0, START  # the clock's reading, and the mark
        self.epoch_end: Mark | None = None  # the running epoch's, once its last step is taken
        self.warmup_end: Mark | None = None
        self.finished: Mark | None = None  # where the last finished epoch ended
        self.windows = 1  # sub-windows in each steady epoch
        self.edges: list[int] = []  # the running epoch's optimizer steps where a sub-window ends, still ahead
        self.window_marks: list[Mark] = []  # where the steady sub-windows start and end, in order
        self.listeners: list[Callable[[Edge, float], None]] = []  # told at each epoch's edges, after the sync

    def listen(self, listener: Callable[[Edge, float], None]) -> None:
        """Call ``listener(edge, reading)`` at each training epoch's start and end (its last step, before
        validation), right after this clock's device sync: the one sync at an edge, for every figure read there."""
        self.listeners.append(listener)

    def now(self) -> float:
        synchronize(self.device)
        if self.barrier is not None:  # every rank reaches the mark: rank 0's clock then times them all
            self.barrier()
        return time.perf_counter()

    def mark(self) -> Mark:
        self.reading = self.now()
        return Mark(self.epoch_start.seconds + self.reading - self.epoch_started_at, self.steps, self.samples)

    def tell(self, edge: Edge, reading: float) -> None:
        for listener in self.listeners:
            listener(edge, reading)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.device = trainer.strategy.root_device
        self.world_size = trainer.world_size
        self.barrier = trainer.strategy.barrier if self.world_size > 1 else None
        self.max_epochs = trainer.max_epochs or 1
        self.windows = windows_per_epoch(self.max_epochs)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.epoch_start = self.finished or START
        self.epoch_started_at = self.now()
        self.tell("start", self.epoch_started_at)
        self.edges = []
        if trainer.current_epoch >= 1:  # a steady epoch: it starts where the last window ended
            self.window_marks = self.window_marks or [self.epoch_start]
            self.edges = edges(0, epoch_steps(trainer), self.windows, group_steps(trainer))

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # the per-step path (one group of steps_per_execution batches): counts, and a clock read at marks only
        self.steps = pl_module.optimizer_steps  # the module counts the optimizer steps it takes
        self.samples += sum(len(y) for _, y in batch)
        last = batch_idx + 1 == trainer.num_training_batches
        if self.max_epochs == 1 and self.warmup_end is None and self.steps >= self.warmup_steps:
            self.warmup_end = self.mark()
            self.window_marks = [self.warmup_end]  # the only epoch's windows share what follows warm-up
            self.edges = edges(self.steps, epoch_steps(trainer), self.windows, group_steps(trainer)) if not last else []
        elif self.edges and self.steps - self.epoch_start.steps >= self.edges[0] and not last:
            while self.edges and self.steps - self.epoch_start.steps >= self.edges[0]:
                self.edges.pop(0)
            self.window_marks.append(self.mark())
        if last:
            self.epoch_end = self.mark()
            self.tell("end", self.reading)
            if self.window_marks:
                self.window_marks.append(self.epoch_end)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.finished = self.epoch_end
        if trainer.current_epoch == 0 and self.max_epochs > 1:
            self.warmup_end = self.finished

    @property
    def steady_start(self) -> Mark | None:
        """Where steady state starts: warm-up's end, when steps were taken after it."""
        end = self.finished
        return self.warmup_end if end and self.warmup_end and self.warmup_end.steps < end.steps else None

    @property
    def steady_excludes(self) -> str | None:
        start = self.steady_start
        if start is None:
            return None
        return "first epoch" if self.max_epochs > 1 else f"first {start.steps} steps"

    @property
    def steady_windows(self) -> list[Mark]:
        """The sub-windows' edges up to the last finished epoch's end."""
        end = self.finished
        return [m for m in self.window_marks if end is not None and m.steps <= end.steps]

    @property
    def trained_samples(self) -> int:
        """The images this rank trained on in the finished epochs."""
        return self.finished.samples if self.finished else 0


def epoch_steps(trainer: Trainer) -> int:
    """Optimizer steps in an epoch (this rank's): the training batches' count, whatever their grouping."""
    batches = trainer.train_dataloader
    return int(getattr(batches, "steps", trainer.num_training_batches))


def group_steps(trainer: Trainer) -> int:
    """Optimizer steps per Lightning step (the last of an epoch may take fewer)."""
    return int(getattr(trainer.train_dataloader, "group", None) or 1)
