"""The record's training part: steady-state and overall throughput, MFU, and seconds to each accuracy target."""

from __future__ import annotations

from lightning import Callback, LightningModule, Trainer

from hwbench.measure.epochs import EpochTable
from hwbench.measure.stability import stability
from hwbench.measure.throughput import FlopsAndPeak
from hwbench.measure.training_clock import START, TrainingClock
from hwbench.record.parts import Training

ACCURACY_TARGETS = (0.97, 0.98, 0.99)


class TrainingSummary(Callback):
    """The run's figures over the epochs that finished, once training ends (or is cut short: ``partial``)."""

    def __init__(self, clock: TrainingClock, meter: FlopsAndPeak, table: EpochTable) -> None:
        self.clock, self.meter, self.table = clock, meter, table
        self.training: Training | None = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.summarize(trainer, pl_module)

    def summarize(self, trainer: Trainer, module: LightningModule, partial: bool = False) -> None:
        self.table.close(module)
        end = self.clock.finished
        if end is None:
            return
        start = self.clock.steady_start
        self.meter.drop_beaten_peak(start or START, end)
        overall = self.meter.rates(START, end)
        steady = self.meter.rates(start, end) if start else None
        epochs = self.table.epochs
        steady_windows = stability(self.clock.steady_windows, self.clock.world_size)
        time_to = {
            f"{target:.2f}": next((e.train_seconds for e in epochs if (e.val_acc or 0) >= target), None)
            for target in ACCURACY_TARGETS
        }
        self.training = Training(
            seconds=end.seconds, epochs=epochs, overall=overall, steady=steady,
            steady_excludes=self.clock.steady_excludes, partial=partial, flops_per_sample=self.meter.flops,
            peak=self.meter.peak, mfu_unavailable=self.meter.mfu_unavailable, measured_peak=self.meter.measured_peak,
            measured_peak_unavailable=self.meter.measured if isinstance(self.meter.measured, str) else None,
            time_to_val_acc=time_to, stability=None if isinstance(steady_windows, str) else steady_windows,
            stability_unavailable=steady_windows if isinstance(steady_windows, str) else None,
        )  # fmt: skip

    def record_parts(self) -> dict[str, Training]:
        return {"training": self.training} if self.training is not None else {}
