"""One line and one typed ``Epoch`` per finished epoch: its time and rate, and the module's loss and accuracy."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from lightning import Callback, LightningModule, Trainer

from hwbench.measure.throughput import FlopsAndPeak, scalars
from hwbench.measure.training_clock import TrainingClock
from hwbench.record.parts import Epoch, SplitFigures

log = logging.getLogger(__name__)


class ReportsFigures(Protocol):
    figures: dict[str, SplitFigures]  # the last epoch's, by split (train, val, test)


class EpochTable(Callback):
    """The epochs as they finish. The module computes the epoch's training figures after this callback's
    ``on_train_epoch_end`` (Lightning calls callbacks first), so an epoch is closed when the next starts or
    training ends, with everything measured. It runs before the clock's callback: closing an epoch (its line,
    its record) happens before the next epoch's clock starts."""

    def __init__(
        self, clock: TrainingClock, meter: FlopsAndPeak, epoch_closed: Callable[[], None] = lambda: None
    ) -> None:
        self.clock, self.meter = clock, meter
        self.epoch_closed = epoch_closed  # off the clock: the job writes its record so far
        self.epochs: list[Epoch] = []
        self.open: Epoch | None = None  # timed, awaiting the module's figures

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        start, end = self.clock.epoch_start, self.clock.epoch_end  # the mark at the epoch's last step
        assert end is not None
        rates = self.meter.rates(start, end)
        seconds = end.seconds - start.seconds
        perf = {"perf/epoch_seconds": seconds, **scalars("perf/train", rates)}
        for logger in trainer.loggers:  # rank 0's clock: straight to its loggers (no cross-rank reduction)
            logger.log_metrics(perf, step=end.steps)  # x-axis: optimizer steps
        self.open = Epoch(epoch=trainer.current_epoch + 1, seconds=seconds, train_seconds=end.seconds,
                          samples_per_sec=rates.samples_per_sec,
                          samples=(end.samples - start.samples) * self.clock.world_size)  # fmt: skip

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.close(pl_module)

    def close(self, module: ReportsFigures | LightningModule) -> None:
        """The open epoch, with the module's figures for it, into the table and the log."""
        if self.open is None:
            return
        figures: dict[str, SplitFigures] = getattr(module, "figures", {})
        train, val = figures.get("train"), figures.get("val")
        epoch = Epoch.model_validate({
            **self.open.model_dump(), "train_loss": train.loss if train else None,
            "train_acc": train.acc if train else None, "val_loss": val.loss if val else None,
            "val_acc": val.acc if val else None,
        })  # fmt: skip
        self.open = None
        self.epochs.append(epoch)
        self.epoch_closed()  # on disk before its line is on the screen
        val_text = f", val acc {epoch.val_acc:.4f}" if epoch.val_acc is not None else ""
        loss = float("nan") if epoch.train_loss is None else epoch.train_loss
        log.info(
            f"epoch {epoch.epoch}/{self.clock.max_epochs} done: {epoch.seconds:.2f} s, "
            f"{epoch.samples_per_sec:,.0f} samples/s, train loss {loss:.4f}{val_text}"
        )
