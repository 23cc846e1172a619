"""The numbers a hardware benchmark reports, measured on clocks that the device agrees with.

Lightning's ``ThroughputMonitor`` synchronizes the GPU after every step, which would slow down the very
thing it measures; this callback synchronizes only where it reads the clock (epoch edges, the end of
warm-up) and hands the counts to Lightning's ``Throughput`` for the rates, FLOP/s and MFU.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from lightning import Callback, LightningModule, Trainer
from lightning.fabric.utilities.throughput import Throughput, measure_flops
from torch import nn

from hwbench.data.datamodules import InMemoryDataModule
from hwbench.devices import synchronize
from hwbench.measure.inference import measure_inference
from hwbench.measure.peaks import peak_flops, precision_class
from hwbench.record.parts import Epoch, Flops, Inference, Metrics, Peak, Rates, Training

log = logging.getLogger(__name__)
ACCURACY_TARGETS = (0.97, 0.98, 0.99)
INPUT_SHAPE = (1, 28, 28)


def flops_per_sample(net: nn.Module) -> Flops:
    """Forward and training (forward + backward) FLOPs for one image, from torch's flop counter."""
    meta = copy.deepcopy(net).to("meta")
    x = torch.empty(2, *INPUT_SHAPE, device="meta")
    y = torch.zeros(2, dtype=torch.long, device="meta")
    forward = measure_flops(meta, lambda: meta(x))
    train = measure_flops(meta, lambda: meta(x), lambda logits: F.cross_entropy(logits, y))
    return Flops(forward=forward // 2, train=train // 2)


def scalars(prefix: str, rates: Rates) -> dict[str, float]:
    """A part's figures as TensorBoard scalars under ``prefix``."""
    return {f"{prefix}_{k}": v for k, v in rates.model_dump(exclude_none=True).items()}


class Mark(NamedTuple):
    """A point in training: seconds of training so far (validation excluded), optimizer steps, samples (this
    rank's: every rank takes batches of the same size, so the global count is this times the world size)."""

    seconds: float
    steps: int
    samples: int


class BenchmarkMonitor(Callback):
    """Per-epoch timing and throughput, steady-state and overall figures, time to accuracy, inference.

    Steady state leaves out warm-up: the first epoch when there are several, else the first
    ``warmup_steps`` optimizer steps of the only epoch (rounded up to a whole Lightning step).
    """

    def __init__(
        self,
        flops: Flops,
        precision: str,
        data: InMemoryDataModule,
        warmup_steps: int = 50,
        inference_batch_size: int = 1024,
        latency_runs: int = 100,
        safe_point: Callable[[], None] | None = None,
        epoch_closed: Callable[[], None] | None = None,
    ) -> None:
        self.flops, self.precision, self.data = flops, precision, data
        # where a stop signal that could not be raised yet is raised (hwbench.job.signals.StopSignals.safe_point)
        self.safe_point = safe_point or (lambda: None)
        self.epoch_closed = epoch_closed or (lambda: None)  # off the clock: the job writes its record so far
        self.warmup_steps, self.latency_runs = warmup_steps, latency_runs
        self.inference_batch_size = inference_batch_size
        self.device = torch.device("cpu")
        self.peak: Peak | None = None
        self.mfu_unavailable: str | None = None
        self.epochs: list[Epoch] = []  # one entry per finished epoch
        self.training: Training | None = None  # the record's parts, once measured
        self.metrics: Metrics | None = None
        self.inference: Inference | None = None
        self.train_seconds, self.steps, self.samples = 0.0, 0, 0
        self.epoch_start, self.epoch_start_mark = 0.0, Mark(0.0, 0, 0)
        self.epoch_end: Mark | None = None
        self.warmup_end: Mark | None = None
        self.finished: Mark | None = None  # where the last finished epoch ended
        self.pending: dict[str, Any] | None = None  # the last epoch, until its accuracies are logged
        self.max_epochs = 1
        self.world_size = 1
        self.barrier: Any = None  # the strategy's, under DDP

    # ---- clocks and counters -------------------------------------------------------------------
    def _now(self) -> float:
        synchronize(self.device)
        if self.barrier is not None:  # every rank reaches the mark: rank 0's clock then times them all
            self.barrier()
        return time.perf_counter()

    def _mark(self) -> Mark:
        return Mark(self.train_seconds + self._now() - self.epoch_start, self.steps, self.samples)

    def rates(self, start: Mark, end: Mark) -> Rates:
        """Global samples/s, batches/s, FLOP/s and MFU (where the peak is known) between two marks."""
        peak = self.peak.flops_per_sec * self.world_size if self.peak else None  # MFU against all the devices
        window = Throughput(available_flops=peak, window_size=2)
        w = self.world_size
        window.update(time=start.seconds, batches=start.steps, samples=start.samples * w, flops=0)
        flops = self.flops.train * (end.samples - start.samples) * w
        window.update(time=end.seconds, batches=end.steps, samples=end.samples * w, flops=flops)
        m = window.compute()
        return Rates(samples_per_sec=m["device/samples_per_sec"], batches_per_sec=m["device/batches_per_sec"],
                     flops_per_sec=m["device/flops_per_sec"], mfu=m.get("device/mfu"))  # fmt: skip

    # ---- fit ------------------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.device = trainer.strategy.root_device
        self.world_size = trainer.world_size
        self.barrier = trainer.strategy.barrier if self.world_size > 1 else None
        self.max_epochs = trainer.max_epochs or 1
        if self.device.type != "cuda":
            self.mfu_unavailable = "no peak FLOP/s is known for CPUs: no MFU"
            return
        name = torch.cuda.get_device_name(self.device)
        precision = precision_class(self.precision, torch.get_float32_matmul_precision())
        flops, source = peak_flops(name, precision)
        if flops is None:
            self.mfu_unavailable = source
        else:
            self.peak = Peak(flops_per_sec=flops, precision=precision, source=source)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close_epoch(trainer)
        self.epoch_start_mark = Mark(self.train_seconds, self.steps, self.samples)
        self.epoch_start = self._now()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # the per-step path (one group of steps_per_execution batches): counts, and a clock read at marks only
        self.safe_point()
        self.steps += len(batch)
        self.samples += sum(len(y) for _, y in batch)
        if self.max_epochs == 1 and self.warmup_end is None and self.steps >= self.warmup_steps:
            self.warmup_end = self._mark()
        if batch_idx + 1 == trainer.num_training_batches:
            self.epoch_end = self._mark()

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self.safe_point()

    def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self.safe_point()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        end = self.finished = self.epoch_end
        assert end is not None
        self.train_seconds = end.seconds
        if trainer.current_epoch == 0 and self.max_epochs > 1:
            self.warmup_end = end
        rates = self.rates(self.epoch_start_mark, end)
        seconds = end.seconds - self.epoch_start_mark.seconds
        perf = {"perf/epoch_seconds": seconds, **scalars("perf/train", rates)}
        if trainer.logger is not None:  # rank 0's clock: straight to its logger (no cross-rank reduction)
            trainer.logger.log_metrics(perf, step=self.steps)  # x-axis: optimizer steps
        # accuracies are logged after this hook (LightningModule.on_train_epoch_end): read them next epoch
        self.pending = {"epoch": trainer.current_epoch + 1, "seconds": seconds, "train_seconds": end.seconds,
                        "samples_per_sec": rates.samples_per_sec,
                        "samples": (end.samples - self.epoch_start_mark.samples) * self.world_size}  # fmt: skip

    def _close_epoch(self, trainer: Trainer) -> None:
        if self.pending is None:
            return
        e, self.pending = self.pending, None
        for key in ("train/acc", "train/loss", "val/acc", "val/loss"):
            if key in trainer.callback_metrics:
                e[key.replace("/", "_")] = float(trainer.callback_metrics[key])
        epoch = Epoch(**e)
        self.epochs.append(epoch)
        self.epoch_closed()  # on disk before its line is on the screen
        val = f", val acc {epoch.val_acc:.4f}" if epoch.val_acc is not None else ""
        loss = float("nan") if epoch.train_loss is None else epoch.train_loss
        log.info(
            f"epoch {epoch.epoch}/{self.max_epochs} done: {epoch.seconds:.2f} s, "
            f"{epoch.samples_per_sec:,.0f} samples/s, train loss {loss:.4f}{val}"
        )

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.summarize(trainer)

    def summarize(self, trainer: Trainer, partial: bool = False) -> None:
        """The run's figures over the epochs that finished (``partial``: training was cut short)."""
        self._close_epoch(trainer)
        end = self.finished
        if end is None:
            return
        overall = self.rates(Mark(0.0, 0, 0), end)
        steady_start = self.warmup_end if self.warmup_end and self.warmup_end.steps < end.steps else None
        steady = self.rates(steady_start, end) if steady_start else None
        time_to = {
            f"{target:.2f}": next((e.train_seconds for e in self.epochs if (e.val_acc or 0) >= target), None)
            for target in ACCURACY_TARGETS
        }
        excludes = (
            ("first epoch" if self.max_epochs > 1 else f"first {steady_start.steps} steps") if steady_start else None
        )
        self.training = Training(
            seconds=end.seconds, epochs=self.epochs, overall=overall, steady=steady, steady_excludes=excludes,
            partial=partial, flops_per_sample=self.flops, peak=self.peak, mfu_unavailable=self.mfu_unavailable,
            time_to_val_acc=time_to,
        )  # fmt: skip
        figures = scalars("perf/overall", overall) | (scalars("perf/steady", steady) if steady else {})
        figures |= {f"perf/seconds_to_val_acc_{k}": v for k, v in time_to.items() if v is not None}
        if trainer.logger is not None:
            trainer.logger.log_metrics(figures, step=end.steps)

    def record_parts(self) -> dict[str, Training | Metrics | Inference]:
        parts = {"training": self.training, "metrics": self.metrics, "inference": self.inference}
        return {name: part for name, part in parts.items() if part is not None}

    @property
    def trained_samples(self) -> int:
        """The images this rank trained on in the finished epochs."""
        return self.finished.samples if self.finished else 0

    # ---- test: inference speed ------------------------------------------------------------------
    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        log.info(f"testing on {len(self.data.splits['test'][0]):,} images")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # the test's figures are final here: kept now, a signal during the inference timing loses nothing
        figures = trainer.callback_metrics
        self.metrics = Metrics(test_acc=float(figures["test/acc"]), test_loss=float(figures["test/loss"]))
        if not trainer.is_global_zero:  # inference is one device's figure: rank 0 measures it alone
            return
        accuracy, batch = self.metrics.test_acc, self.inference_batch_size
        log.info(f"tested (accuracy {accuracy:.4f}); timing inference at batch {batch}")
        x = self.data.splits["test"][0]
        with trainer.precision_plugin.forward_context():
            inference = measure_inference(pl_module, x, self.inference_batch_size, self.latency_runs, self.safe_point)
        self.inference = Inference(**inference, flops_per_sec=inference["samples_per_sec"] * self.flops.forward)
        if trainer.logger is not None:  # the batch size is a setting (in the record), not a time series
            figures = self.inference.model_dump(exclude={"batch_size"}, exclude_none=True)
            trainer.logger.log_metrics({f"perf/inference_{k}": v for k, v in figures.items()}, step=self.steps)
