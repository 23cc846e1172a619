"""The numbers a hardware benchmark reports, measured on clocks that the device agrees with.

Lightning's ``ThroughputMonitor`` callback synchronizes the GPU after every step, which would slow
down the very thing it measures; so this callback synchronizes only at the few points where it reads
the clock (epoch edges, the end of warm-up) and hands the counts to Lightning's ``Throughput`` for the
rates, FLOP/s and MFU.
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from lightning import Callback, LightningModule, Trainer
from lightning.fabric.utilities.throughput import Throughput, get_available_flops, measure_flops
from lightning.pytorch.callbacks.throughput_monitor import _plugin_to_compute_dtype
from torch import Tensor, nn

log = logging.getLogger(__name__)
ACCURACY_TARGETS = (0.97, 0.98, 0.99)
INPUT_SHAPE = (1, 28, 28)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so that a clock read afterwards is true."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def flops_per_sample(net: nn.Module) -> dict[str, int]:
    """Forward and training (forward + backward) FLOPs for one image, from torch's flop counter."""
    meta = copy.deepcopy(getattr(net, "_orig_mod", net)).to("meta")  # unwrap torch.compile
    x = torch.empty(2, *INPUT_SHAPE, device="meta")
    y = torch.zeros(2, dtype=torch.long, device="meta")
    forward = measure_flops(meta, lambda: meta(x))
    train = measure_flops(meta, lambda: meta(x), lambda logits: F.cross_entropy(logits, y))
    return {"forward": forward // 2, "train": train // 2}


class Mark(NamedTuple):
    """A point in training: seconds of training so far (validation excluded), batches, samples."""

    seconds: float
    batches: int
    samples: int


class BenchmarkMonitor(Callback):
    """Per-epoch timing and throughput, steady-state vs overall figures, time to accuracy, inference.

    Steady state leaves out warm-up: the first epoch when there are several, else the first
    ``warmup_steps`` steps of the only epoch.
    """

    def __init__(self, warmup_steps: int = 50, inference_batch_size: int = 1024, latency_runs: int = 100) -> None:
        self.warmup_steps = warmup_steps
        self.inference_batch_size = inference_batch_size
        self.latency_runs = latency_runs
        self.epochs: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {}

    # ---- clocks and counters -------------------------------------------------------------------
    def _now(self) -> float:
        synchronize(self.device)
        return time.perf_counter()

    def _mark(self) -> Mark:
        return Mark(self.train_seconds + self._now() - self.epoch_start, self.batches, self.samples)

    def rates(self, start: Mark, end: Mark) -> dict[str, float | None]:
        """Samples/s, batches/s, FLOP/s and MFU (where the peak is known) between two marks."""
        window = Throughput(available_flops=self.peak_flops, window_size=2)
        window.update(time=start.seconds, batches=start.batches, samples=start.samples, flops=0)
        flops = self.flops["train"] * (end.samples - start.samples)
        window.update(time=end.seconds, batches=end.batches, samples=end.samples, flops=flops)
        m = window.compute()
        return {
            "samples_per_sec": m["device/samples_per_sec"],
            "batches_per_sec": m["device/batches_per_sec"],
            "flops_per_sec": m["device/flops_per_sec"],
            "mfu": m.get("device/mfu"),
        }

    # ---- fit ------------------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not hasattr(self, "flops"):
            self.device = trainer.strategy.root_device
            self.flops = flops_per_sample(pl_module.net)
            self.peak_flops = get_available_flops(self.device, _plugin_to_compute_dtype(trainer.precision_plugin))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if hasattr(pl_module.net, "_orig_mod"):  # torch.compile'd: compile now, so no training clock sees it
            x, y = (t[: trainer.datamodule.batch_size] for t in trainer.datamodule.splits["train"])
            state = copy.deepcopy(pl_module.state_dict())
            start = self._now()
            with trainer.precision_plugin.forward_context():
                loss = F.cross_entropy(pl_module(x), y)
            loss.backward()
            self.results["compile_seconds"] = self._now() - start
            pl_module.load_state_dict(state)  # the warm-up step leaves no trace: weights and BN statistics
            pl_module.zero_grad(set_to_none=True)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.trainer = trainer
        self.train_seconds, self.batches, self.samples = 0.0, 0, 0
        self.warmup_end: Mark | None = None
        self.finished: Mark | None = None  # where the last finished epoch ended
        self.pending: dict[str, Any] | None = None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close_epoch(trainer)
        self.epoch_start_mark = Mark(self.train_seconds, self.batches, self.samples)
        self.epoch_start = self._now()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # the per-step path (one group of steps_per_execution batches): counts, and a clock read at marks only
        self.batches += len(batch)
        self.samples += sum(len(y) for _, y in batch)
        if trainer.max_epochs == 1 and self.warmup_end is None and self.batches >= self.warmup_steps:
            self.warmup_end = self._mark()
        if batch_idx + 1 == trainer.num_training_batches:
            self.epoch_end = self._mark()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        end = self.finished = self.epoch_end
        self.train_seconds = end.seconds
        if trainer.current_epoch == 0 and trainer.max_epochs > 1:
            self.warmup_end = end
        rates = self.rates(self.epoch_start_mark, end)
        seconds = end.seconds - self.epoch_start_mark.seconds
        perf = {"perf/epoch_seconds": seconds, **{f"perf/train_{k}": v for k, v in rates.items() if v is not None}}
        pl_module.log_dict(perf | {"step": self.batches})  # x-axis: optimizer steps
        # accuracies are logged after this hook (LightningModule.on_train_epoch_end): read them next epoch
        self.pending = {"epoch": trainer.current_epoch + 1, "seconds": seconds, "train_seconds": end.seconds,
                        "samples_per_sec": rates["samples_per_sec"]}  # fmt: skip

    def _close_epoch(self, trainer: Trainer) -> None:
        if self.pending is None:
            return
        metrics = trainer.callback_metrics
        for key in ("train/acc", "train/loss", "val/acc", "val/loss"):
            if key in metrics:
                self.pending[key.replace("/", "_")] = float(metrics[key])
        self.epochs.append(self.pending)
        self.pending = None
        e = self.epochs[-1]
        val = f", val acc {e['val_acc']:.4f}" if "val_acc" in e else ""
        log.info(
            f"epoch {e['epoch']}/{trainer.max_epochs} done: {e['seconds']:.2f} s, "
            f"{e['samples_per_sec']:,.0f} samples/s, train loss {e.get('train_loss', float('nan')):.4f}{val}"
        )

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.summarize()

    def summarize(self, partial: bool = False) -> None:
        """The run's figures over the epochs that finished (``partial``: training was cut short)."""
        if getattr(self, "finished", None) is None:
            return
        self._close_epoch(self.trainer)
        end = self.finished
        overall = self.rates(Mark(0.0, 0, 0), end)
        steady = self.rates(self.warmup_end, end) if self.warmup_end and self.warmup_end.batches < end.batches else None
        time_to = {
            f"{target:.2f}": next((e["train_seconds"] for e in self.epochs if e.get("val_acc", 0) >= target), None)
            for target in ACCURACY_TARGETS
        }
        self.results.update(
            train_seconds=end.seconds,
            flops_per_sample=self.flops,
            peak_flops=self.peak_flops,
            overall=overall,
            steady=steady,
            steady_excludes=("first epoch" if self.trainer.max_epochs > 1 else f"first {self.warmup_end.batches} steps")
            if steady else None,
            time_to_val_acc=time_to,
            partial=partial,
        )  # fmt: skip
        scalars = {f"perf/overall_{k}": v for k, v in overall.items() if v is not None}
        scalars |= {f"perf/steady_{k}": v for k, v in (steady or {}).items() if v is not None}
        scalars |= {f"perf/seconds_to_val_acc_{k}": v for k, v in time_to.items() if v is not None}
        if self.trainer.logger is not None:
            self.trainer.logger.log_metrics(scalars, step=end.batches)

    # ---- test: inference speed ------------------------------------------------------------------
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        x = trainer.datamodule.splits["test"][0]
        with trainer.precision_plugin.forward_context():
            inference = measure_inference(pl_module, x, self.inference_batch_size, self.latency_runs)
        inference["flops_per_sec"] = inference["samples_per_sec"] * self.flops["forward"]
        self.results["inference"] = inference
        if trainer.logger is not None:
            trainer.logger.log_metrics({f"perf/inference_{k}": v for k, v in inference.items()}, step=self.batches)


@torch.inference_mode()
def measure_inference(model: nn.Module, x: Tensor, batch_size: int, latency_runs: int) -> dict[str, float]:
    """Samples/s over ``x`` at ``batch_size``, and the median and p90 latency of single images, after warm-up."""
    model.eval()
    device = x.device
    batch_size = min(batch_size, len(x))
    timed = x[: len(x) // batch_size * batch_size]  # full batches only: a new shape would recompile a compiled net
    for warm in timed.split(batch_size)[:2]:
        model(warm)
    synchronize(device)
    start = time.perf_counter()
    for b in timed.split(batch_size):
        model(b)
    synchronize(device)
    samples_per_sec = len(timed) / (time.perf_counter() - start)
    for i in range(10):
        model(x[i : i + 1])
    latencies = []
    for i in range(latency_runs):
        synchronize(device)
        start = time.perf_counter()
        model(x[i : i + 1])
        synchronize(device)
        latencies.append(time.perf_counter() - start)
    deciles = statistics.quantiles(latencies, n=10)
    return {
        "batch_size": batch_size,
        "samples_per_sec": samples_per_sec,
        "latency_ms_p50": statistics.median(latencies) * 1e3,
        "latency_ms_p90": deciles[-1] * 1e3,
    }
