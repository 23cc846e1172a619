"""What a job is built from its config: the net, the LightningModule, the measuring callbacks, the Trainer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lightning as L
import torch
from hydra.utils import instantiate
from lightning import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from hwbench.data.datamodules import InMemoryDataModule
from hwbench.execution import Execution, PrepareExecution
from hwbench.job.config import MEASUREMENTS, measured, world_size
from hwbench.job.console.progress import StepProgressBar
from hwbench.launch import slurm
from hwbench.launch.external_ranks import StopWithoutBroadcast
from hwbench.launch.safe_points import SafePoints
from hwbench.launch.signals import StopSignals
from hwbench.measure.energy import Energy
from hwbench.measure.epochs import EpochTable
from hwbench.measure.gpu_busy import GpuBusy
from hwbench.measure.inference import InferenceTiming
from hwbench.measure.machine_load import MachineLoadCheck
from hwbench.measure.memory import PeakMemory
from hwbench.measure.phases import TrainingSpan
from hwbench.measure.test_accuracy import TestAccuracy
from hwbench.measure.throughput import FlopsAndPeak, flops_per_sample
from hwbench.measure.training_clock import TrainingClock
from hwbench.measure.training_summary import TrainingSummary
from hwbench.model.classifier import Classifier
from hwbench.model.cpu_kernels.autotune import CpuKernelChoice
from hwbench.model.paper import init_weights
from hwbench.record.parts import Part, Resources


def build_net(cfg: DictConfig, execution: Execution) -> torch.nn.Module:
    """The config's network: initialised, in its memory format, as the strategy runs it (hwbench and the
    overhead benchmark's hand loop both train this)."""
    net = init_weights(instantiate(cfg.arch.net), cfg.init)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return execution.build_net(net)


def build_model(cfg: DictConfig, net: torch.nn.Module, execution: Execution) -> Classifier:
    return Classifier(
        net,
        optimizer=instantiate(cfg.optim.optimizer),
        scheduler=instantiate(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
        execution=execution,
        one_hot_targets=cfg.one_hot_targets,
        channels_last=cfg.channels_last,
    )


@dataclass
class Measurements:
    """The job's measuring callbacks, one per figure, and the record parts they give. The clock, the epochs, the
    summary and the test always run; the others as ``measure`` chooses (None: not measured)."""

    kernels: CpuKernelChoice
    prepare: PrepareExecution
    clock: TrainingClock
    meter: FlopsAndPeak
    epochs: EpochTable
    summary: TrainingSummary
    test: TestAccuracy
    span: TrainingSpan
    load: MachineLoadCheck | None
    inference: InferenceTiming | None
    memory: PeakMemory | None
    energy: Energy | None
    busy: GpuBusy | None
    not_measured: list[str]

    @classmethod
    def of(cls, cfg: DictConfig, net: torch.nn.Module, data: InMemoryDataModule, execution: Execution,
           stop: StopSignals | None, epoch_closed: Callable[[], None] = lambda: None) -> Measurements:  # fmt: skip
        on = {name: measured(cfg, name) for name in MEASUREMENTS}
        on["canary"] = on["canary"] and on["machine_load"]  # its figures are in the machine_load part
        clock = TrainingClock(cfg.warmup_steps)  # what every other figure's window is read from
        flops = flops_per_sample(getattr(net, "_orig_mod", net))  # counted on the eager net
        meter = FlopsAndPeak(flops, str(cfg.device.precision), probe=on["peak"])
        epochs = EpochTable(clock, meter, epoch_closed)
        safe_point = stop.safe_point if stop is not None else (lambda: None)
        latency_runs = int(cfg.measure.inference.get("latency_runs", 100)) if on["inference"] else 0
        return cls(
            kernels=CpuKernelChoice(cfg.device.cpu_kernels, data),  # in its setup: before any clock starts
            prepare=PrepareExecution(execution, data), clock=clock, meter=meter, epochs=epochs,
            summary=TrainingSummary(clock, meter, epochs), test=TestAccuracy(), span=TrainingSpan(),
            load=MachineLoadCheck(cfg.device.require_quiet, windows=on["machine_load"], canary=on["canary"])
            if on["machine_load"] else None,
            inference=InferenceTiming(data, flops, cfg.inference_batch_size, latency_runs, safe_point=safe_point)
            if on["inference"] else None,
            memory=PeakMemory() if on["memory"] else None,
            energy=Energy(clock) if on["energy"] else None,
            busy=GpuBusy(execution, clock) if on["gpu_busy"] else None,
            not_measured=[name for name in MEASUREMENTS if not on[name]],
        )  # fmt: skip

    def callbacks(self, stop: StopSignals | None) -> list[Callback]:
        """In the order they run: SIGTERM taken back from Lightning before any other hook of a stage (a collective
        there would meet Lightning's broadcast); the kernel choice and preparation before the clock; an epoch closed
        before the next epoch's clock starts; a held signal raised before a step is counted."""
        ordered = [StopWithoutBroadcast(stop), self.kernels, self.prepare, self.epochs, self.load, SafePoints(stop),
                   self.clock, self.meter, self.summary, self.test, self.inference, self.memory, self.energy,
                   self.busy, self.span]  # fmt: skip
        return [callback for callback in ordered if callback is not None]

    def record_parts(self) -> dict[str, Part | list[str]]:
        parts: dict[str, Part | list[str]] = {}
        for callback in (self.kernels, self.prepare, self.load, self.summary, self.test, self.inference):
            if callback is not None:
                parts |= callback.record_parts()
        if figures := [c.figures() for c in (self.memory, self.energy, self.busy) if c is not None]:
            parts["resources"] = Resources.of(*figures)
        parts["not_measured"] = self.not_measured
        return parts


def make_trainer(cfg: DictConfig, accelerator: str, loggers: list[Logger], callbacks: list) -> L.Trainer:
    every = max(1, cfg.log_every_n_steps // cfg.steps_per_execution)  # in Lightning steps
    return L.Trainer(
        accelerator=accelerator,
        devices=cfg.device.devices,
        num_nodes=cfg.device.nodes,  # ranks on the other nodes: started by SLURM or torchrun (hwbench/launch/)
        strategy="ddp" if distributed(cfg) else "auto",  # NCCL on CUDA, gloo on CPU; ranks >= 1: hwbench.launch.ddp
        use_distributed_sampler=False,  # hwbench's batches shard themselves (data.TensorBatches)
        precision=cfg.device.precision,
        max_epochs=cfg.epochs,
        logger=loggers,  # none: an empty list (None would give Lightning's own TensorBoard logger)
        callbacks=[*callbacks, StepProgressBar(refresh_rate=every)],
        log_every_n_steps=every,
        num_sanity_val_steps=0,  # a benchmark has no use for a warm-up validation pass
        enable_checkpointing=False,
        enable_model_summary=False,
        benchmark=cfg.device.cudnn_benchmark,
        plugins=slurm.environment(),  # under srun; torchrun's is Lightning's own pick
    )


def distributed(cfg: DictConfig) -> bool:
    return world_size(cfg) > 1 or cfg.device.strategy == "ddp"
