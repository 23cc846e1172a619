"""One job: build everything from the config, train, test, and write the results record."""

from __future__ import annotations

import contextlib
import time
import traceback
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from hwbench.devices import configure_torch, keep_freed_host_memory, quiet_blas_threads, resolve_accelerator
from hwbench.errors import DeviceUnavailable, HwbenchError, Interrupted, OutputUnwritable, one_line
from hwbench.execution import Execution, PrepareExecution
from hwbench.job.config import check
from hwbench.job.console.progress import StepProgressBar
from hwbench.job.ddp import job_scope, process_rank
from hwbench.job.process import process_part
from hwbench.job.signals import StopSignals, signals_raise_interrupted
from hwbench.job.tensorboard import JobLogger, is_number, log_hparams
from hwbench.measure.machine_load import MachineLoadCheck
from hwbench.measure.resources import ResourceMonitor
from hwbench.measure.training_clock import BenchmarkMonitor, flops_per_sample
from hwbench.model.classifier import Classifier
from hwbench.model.cpu_kernels.autotune import CpuKernelChoice
from hwbench.model.paper import init_weights
from hwbench.record.fingerprint import as_markdown, fingerprint
from hwbench.record.parts import ExecutionPart, Fingerprint, Interruption, Training
from hwbench.record.results import ResultsRecord, now, refuse_taken, write_record
from hwbench.record.writing import writing

Measuring = CpuKernelChoice | PrepareExecution | MachineLoadCheck | BenchmarkMonitor | ResourceMonitor  # record_parts()


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


def make_trainer(cfg: DictConfig, accelerator: str, logger: TensorBoardLogger, callbacks: list) -> L.Trainer:
    every = max(1, cfg.log_every_n_steps // cfg.steps_per_execution)  # in Lightning steps
    devices = cfg.device.devices
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy="ddp" if distributed(cfg) else "auto",  # NCCL on CUDA, gloo on CPU; ranks >= 1: hwbench.job.ddp
        use_distributed_sampler=False,  # hwbench's batches shard themselves (data.TensorBatches)
        precision=cfg.device.precision,
        max_epochs=cfg.epochs,
        logger=logger,
        callbacks=[*callbacks, StepProgressBar(refresh_rate=every)],
        log_every_n_steps=every,
        num_sanity_val_steps=0,  # a benchmark has no use for a warm-up validation pass
        enable_checkpointing=False,
        enable_model_summary=False,
        benchmark=cfg.device.cudnn_benchmark,
    )


def run(cfg: DictConfig, out_dir: Path, shared: str | None = None) -> ResultsRecord:
    """Train and test one configuration and write its results record, whatever happens.

    Returns the record (ok, skipped, failed or diverged); raises ``Interrupted`` after recording what
    finished, and ``OutputFolderTaken`` before writing anything. Only rank 0 writes (the other ranks of a
    DDP job share its folder). ``shared``: why the job runs in a process it shares (python -m hwbench gives it
    a fresh one; called directly, it runs in its caller's).
    """
    with job_scope(distributed(cfg)):
        return Job(cfg, out_dir, writes=process_rank() == 0, shared=shared).run()


class Job:
    """One job: build, fit, test, then the record, assembled from the parts its measuring callbacks return
    (whatever was built before a failure or a signal still gives its part)."""

    def __init__(self, cfg: DictConfig, out_dir: Path, writes: bool, shared: str | None = None) -> None:
        self.cfg, self.out_dir, self.writes, self.shared = cfg, out_dir, writes, shared
        self.measuring: list[Measuring] = []
        self.logger: TensorBoardLogger | None = None
        self.trainer: L.Trainer | None = None
        self.stop: StopSignals | None = None  # the job's own, while it runs

    def run(self) -> ResultsRecord:
        start = time.perf_counter()
        with signals_raise_interrupted() as stop:  # from the first write to the last: no signal cuts a record short
            self.stop = stop
            if self.writes:
                refuse_taken(self.out_dir)
            record = ResultsRecord.start(self.cfg)
            record.job = process_part(self.shared)
            try:
                if self.writes:  # claims the folder; a killed job leaves "running", never nothing
                    write_record(self.out_dir, record)
                self.train_and_test(record)
            except DeviceUnavailable as err:
                record.status, record.reason = "skipped", str(err)
            except OutputUnwritable as err:  # raised again once the record has had its try
                record.status, record.reason = "failed", str(err)
                raise
            except HwbenchError as err:
                record.status, record.reason = "failed", str(err)
            except Interrupted as err:
                self.record_interruption(record, err)
                raise
            except Exception as err:  # unexpected: the record keeps the traceback, the screen gets one line
                record.status, record.reason = "failed", f"{type(err).__name__}: {one_line(err)}"
                record.traceback = traceback.format_exc()
            finally:
                with stop.held():  # a signal now is raised once the record is on disk
                    self.finish(record, start)
        return record

    def record_interruption(self, record: ResultsRecord, err: Interrupted) -> None:
        """What finished before the signal: the epochs (their figures marked partial when training was cut
        short), and the test's figures when the signal came in the inference timing after it."""
        record.status = "interrupted"
        monitor = self.monitor
        where = ""
        if monitor is not None and monitor.training is not None:  # training had finished
            where = ", in the test" if monitor.metrics is None else ", in the inference timing (tested)"
        elif monitor is not None and self.trainer is not None:
            monitor.summarize(self.trainer, partial=True)
        epochs, steps = (len(monitor.epochs), monitor.steps) if monitor else (0, 0)
        record.reason = f"{err.signal_name} after {epochs} epoch(s){where}"
        record.interruption = Interruption(signal=err.signal_name, epochs_finished=epochs, steps_finished=steps)

    def finish(self, record: ResultsRecord, start: float) -> None:
        """The record from every part measured, on disk; then TensorBoard's last figures, flushed."""
        self.assemble(record)
        record.finished, record.wall_seconds = now(), time.perf_counter() - start
        try:
            if self.writes:
                write_record(self.out_dir, record)  # on failure the last record written stays
        finally:
            self.close_logger(record)

    def assemble(self, record: ResultsRecord) -> None:
        """Each measuring callback's parts into the record, validated on assignment: a wrong name or type fails."""
        for callback in self.measuring:
            for name, part in callback.record_parts().items():
                setattr(record, name, part)
        if record.cpu_kernels is not None and record.fingerprint is not None:  # the machine as it ran: its kernels
            record.fingerprint.cpu_kernels = record.cpu_kernels.chosen

    def save_progress(self, record: ResultsRecord) -> None:
        """After each epoch, off the clock: the record so far, so that a job whose process dies keeps its finished
        epochs (hwbench.job.process marks it failed)."""
        if self.writes and (monitor := self.monitor) is not None:
            seconds = monitor.finished.seconds if monitor.finished else None
            record.training = Training(seconds=seconds, epochs=list(monitor.epochs), partial=True)
            with self.stop.held() if self.stop else contextlib.nullcontext():
                write_record(self.out_dir, record)

    @property
    def monitor(self) -> BenchmarkMonitor | None:
        return next((c for c in self.measuring if isinstance(c, BenchmarkMonitor)), None)

    def train_and_test(self, record: ResultsRecord) -> None:
        cfg = self.cfg
        check(cfg)
        execution: Execution = instantiate(cfg.execution)
        record.execution = ExecutionPart(kind=execution.kind, mode=execution.mode,
                                         steps_per_graph=execution.steps_per_graph)  # fmt: skip
        accelerator = resolve_accelerator(cfg.device.accelerator)
        execution.refuse(cfg, accelerator)
        need_gpus(accelerator, cfg.device.devices)  # before Lightning starts any rank
        threads = configure_torch(cfg.device)
        quiet_blas_threads()
        keep_freed_host_memory()
        record.fingerprint = Fingerprint(**fingerprint(threads, str(cfg.device.precision), accelerator))
        L.seed_everything(cfg.seed, verbose=False)
        net = build_net(cfg, execution)
        model, data = build_model(cfg, net, execution), instantiate(cfg.data)
        flops = flops_per_sample(getattr(net, "_orig_mod", net))  # counted on the eager net
        monitor = BenchmarkMonitor(flops, str(cfg.device.precision), data, cfg.warmup_steps, cfg.inference_batch_size,
                                   safe_point=self.stop.safe_point if self.stop else None,
                                   epoch_closed=lambda: self.save_progress(record))  # fmt: skip
        kernels = CpuKernelChoice(cfg.device.cpu_kernels, data)  # in its setup: before any clock starts
        load = MachineLoadCheck(cfg.device.require_quiet)  # before the clock's callback: reads off its clock
        resources = ResourceMonitor(execution, monitor)
        self.measuring = [kernels, PrepareExecution(execution, data), load, monitor, resources]
        self.logger = JobLogger(save_dir=self.out_dir, name="", version="", default_hp_metric=False)
        with writing(self.out_dir):
            self.logger.experiment.add_text("fingerprint", as_markdown(record.fingerprint.model_dump()))
        self.trainer = trainer = make_trainer(cfg, accelerator, self.logger, list(self.measuring))
        trainer.fit(model, datamodule=data)
        record.world_size, record.strategy = trainer.world_size, type(trainer.strategy).__name__
        record.backend = getattr(trainer.strategy, "process_group_backend", None)
        record.global_batch_size = cfg.batch_size * trainer.world_size
        if model.diverged_epoch is not None:
            record.status, record.diverged_epoch = "diverged", model.diverged_epoch
            record.reason = (
                f"the training loss is not finite in epoch {model.diverged_epoch}: training stopped there; "
                f"lower the learning rate (lr={cfg.lr})"
            )
            return
        trainer.test(model, datamodule=data, verbose=False)
        self.assemble(record)  # the test's figures and the inference timing: the monitor's parts
        record.status = "ok"

    def close_logger(self, record: ResultsRecord) -> None:
        """The run's last TensorBoard figures (resources, the HParams row), then flush the event file."""
        if self.logger is None:
            return
        if record.status == "ok":
            step = self.monitor.steps if self.monitor else 0
            figures = record.resources.model_dump(exclude_none=True) if record.resources else {}
            self.logger.log_metrics({f"resources/{k}": v for k, v in figures.items() if is_number(v)}, step=step)
            with writing(self.out_dir):
                log_hparams(self.logger, self.cfg, record, step)
        self.logger.finalize("success" if record.status == "ok" else "failed")


def distributed(cfg: DictConfig) -> bool:
    return cfg.device.devices > 1 or cfg.device.strategy == "ddp"


def need_gpus(accelerator: str, devices: int) -> None:
    """A job asking for more GPUs than the machine has is skipped (counted without a CUDA context)."""
    present = torch.cuda.device_count() if accelerator == "cuda" else devices
    if devices > present:
        raise DeviceUnavailable(f"device.devices={devices} but this machine has {present} CUDA GPU(s)")
