"""Where a job's wall time goes: the span of its training epochs, for the job's phases (preparing, training,
testing, writing) that a sweep's closing line adds up. Host clock only, at epoch edges: nothing in the step."""

from __future__ import annotations

import time

from lightning import Callback, LightningModule, Trainer


class TrainingSpan(Callback):
    """From the first training epoch's start to the last one's end, validation included."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.ended: float | None = None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.started is None:
            self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.ended = time.perf_counter()

    @property
    def seconds(self) -> float:
        return (self.ended - self.started) if self.started is not None and self.ended is not None else 0.0
