"""The one warm-up callback: the strategy prepares before the training clock starts, and is timed doing it."""

from __future__ import annotations

import time

from lightning import Callback, LightningModule, Trainer

from hwbench.data.datamodules import InMemoryDataModule
from hwbench.devices import synchronize
from hwbench.execution.strategy import Execution
from hwbench.record.parts import ExecutionPart


class PrepareExecution(Callback):
    """Runs ``execution.prepare`` (compiling, capturing) at the start of training, off the training clock."""

    def __init__(self, execution: Execution, data: InMemoryDataModule) -> None:
        self.execution, self.data = execution, data
        self.seconds: float | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.execution.prepares:
            return
        device = trainer.strategy.root_device
        synchronize(device)
        start = time.perf_counter()
        self.execution.prepare(pl_module, self.data)  # type: ignore[arg-type]
        synchronize(device)
        self.seconds = time.perf_counter() - start

    def record_parts(self) -> dict[str, ExecutionPart]:
        return {"execution": self.execution.part(prepare_seconds=self.seconds)}
