"""One job: build everything from the config, train, test, and write the results record."""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from hwbench.classifier import Classifier
from hwbench.compiled import CUDA_GRAPH_MODES, CompileWarmup, compile_net
from hwbench.config import check
from hwbench.cpu_kernels.autotune import CpuKernelChoice
from hwbench.ddp import job_scope, process_rank
from hwbench.devices import configure_torch, keep_freed_host_memory, quiet_blas_threads, resolve_accelerator
from hwbench.errors import DeviceUnavailable, HwbenchError, Interrupted
from hwbench.fingerprint import as_markdown, fingerprint
from hwbench.graphed import GraphCapture
from hwbench.interrupts import signals_raise_interrupted
from hwbench.models import init_weights
from hwbench.monitor import BenchmarkMonitor, flops_per_sample
from hwbench.progress import StepProgressBar
from hwbench.resources import ResourceMonitor
from hwbench.results import Fingerprint, Interruption, Metrics, ResultsRecord, now, refuse_taken, write_record


def build_net(cfg: DictConfig) -> torch.nn.Module:
    """The config's network: initialised, in its memory format, compiled if asked (hwbench and the overhead
    benchmark's hand loop both train this)."""
    net = init_weights(instantiate(cfg.arch.net), cfg.init)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return compile_net(net, cfg.compile) if cfg.compile else net


def build_model(cfg: DictConfig, net: torch.nn.Module) -> Classifier:
    return Classifier(
        net,
        optimizer=instantiate(cfg.optim.optimizer),
        scheduler=instantiate(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
        one_hot_targets=cfg.one_hot_targets,
        channels_last=cfg.channels_last,
        copy_logits=cfg.compile in CUDA_GRAPH_MODES,
        graphed=cfg.execution == "graph",
    )


def make_trainer(cfg: DictConfig, accelerator: str, logger: TensorBoardLogger, callbacks: list) -> L.Trainer:
    every = max(1, cfg.log_every_n_steps // cfg.steps_per_execution)  # in Lightning steps
    devices = cfg.device.devices
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy="ddp" if distributed(cfg) else "auto",  # NCCL on CUDA, gloo on CPU; ranks >= 1: hwbench.ddp
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


def run(cfg: DictConfig, out_dir: Path) -> ResultsRecord:
    """Train and test one configuration and write its results record, whatever happens.

    Returns the record (ok, skipped, failed or diverged); raises ``Interrupted`` after recording what
    finished, and ``OutputFolderTaken`` before writing anything.
    """
    with job_scope(distributed(cfg)):
        return _run(cfg, out_dir, writer=process_rank() == 0)


def _run(cfg: DictConfig, out_dir: Path, writer: bool) -> ResultsRecord:
    """``writer``: rank 0, the only process that writes the record (the others share its folder)."""
    start = time.perf_counter()
    if writer:
        refuse_taken(out_dir)
    record = ResultsRecord.start(cfg)
    if writer:
        write_record(out_dir, record)  # claims the folder; a killed job leaves "running", never nothing
    logger: TensorBoardLogger | None = None
    trainer: L.Trainer | None = None
    monitor: BenchmarkMonitor | None = None
    warmup: CompileWarmup | GraphCapture | None = None
    resources: ResourceMonitor | None = None
    kernels: CpuKernelChoice | None = None
    try:
        with signals_raise_interrupted():
            check(cfg)
            accelerator = resolve_accelerator(cfg.device.accelerator)
            if cfg.execution == "graph" and accelerator != "cuda":
                raise DeviceUnavailable(f"execution=graph captures CUDA graphs and this job runs on {accelerator}: "
                                        f"use a CUDA GPU (device=gpu) or execution=eager")  # fmt: skip
            need_gpus(accelerator, cfg.device.devices)  # before Lightning starts any rank
            threads = configure_torch(cfg.device)
            quiet_blas_threads()
            keep_freed_host_memory()
            record.fingerprint = Fingerprint(**fingerprint(threads, str(cfg.device.precision), accelerator))
            L.seed_everything(cfg.seed, verbose=False)
            net = build_net(cfg)
            model, data = build_model(cfg, net), instantiate(cfg.data)
            flops = flops_per_sample(getattr(net, "_orig_mod", net))  # counted on the eager net
            monitor = BenchmarkMonitor(
                flops, str(cfg.device.precision), data, cfg.warmup_steps, cfg.inference_batch_size
            )
            warmup = CompileWarmup(data) if cfg.compile else GraphCapture(data) if cfg.execution == "graph" else None
            resources = ResourceMonitor()
            kernels = CpuKernelChoice(cfg.device.cpu_kernels, data)  # in its setup: before any clock starts
            logger = TensorBoardLogger(save_dir=out_dir, name="", version="", default_hp_metric=False)
            logger.experiment.add_text("fingerprint", as_markdown(record.fingerprint.model_dump()))
            callbacks = [c for c in (kernels, warmup, monitor, resources) if c is not None]
            trainer = make_trainer(cfg, accelerator, logger, callbacks)
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
            else:
                (test,) = trainer.test(model, datamodule=data, verbose=False)
                record.metrics = Metrics(test_acc=test["test/acc"], test_loss=test["test/loss"])
                record.status = "ok"
    except DeviceUnavailable as err:
        record.status, record.reason = "skipped", str(err)
    except HwbenchError as err:
        record.status, record.reason = "failed", str(err)
    except Interrupted as err:
        epochs = len(monitor.epochs) if monitor else 0
        if monitor is not None and trainer is not None:
            monitor.summarize(trainer, partial=True)
        record.status, record.reason = "interrupted", f"{err.signal_name} after {epochs} epoch(s)"
        steps = monitor.steps if monitor else 0
        record.interruption = Interruption(signal=err.signal_name, epochs_finished=epochs, steps_finished=steps)
        raise
    except Exception as err:  # unexpected: the record keeps the traceback, the screen gets one line
        record.status, record.reason = "failed", f"{type(err).__name__}: {first_line(err)}"
        record.traceback = traceback.format_exc()
    finally:
        measured = {**monitor.results, "epoch_table": monitor.epochs} if monitor else {}
        if warmup is not None:
            measured["capture_seconds" if isinstance(warmup, GraphCapture) else "compile_seconds"] = warmup.seconds
        if resources is not None:
            trained = monitor.finished.samples // monitor.world_size if monitor and monitor.finished else 0
            measured["resources"] = resources.summarize(trained)  # the monitor counts; energy is per process
        if kernels is not None and kernels.part is not None and record.fingerprint is not None:
            measured["cpu_kernels"] = kernels.part
            record.fingerprint.cpu_kernels = kernels.part.chosen
        done = {"finished": now(), "wall_seconds": time.perf_counter() - start}
        record = ResultsRecord.model_validate(record.model_dump() | measured | done)
        if writer:
            write_record(out_dir, record)
        if logger is not None:
            if record.status == "ok":
                step = monitor.steps if monitor else 0
                figures = record.resources.model_dump(exclude_none=True) if record.resources else {}
                logger.log_metrics({f"resources/{k}": v for k, v in figures.items() if is_number(v)}, step=step)
                log_hparams(logger, cfg, record, step)
            logger.finalize("success" if record.status == "ok" else "failed")  # flushes the event file
    return record


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def distributed(cfg: DictConfig) -> bool:
    return cfg.device.devices > 1 or cfg.device.strategy == "ddp"


def need_gpus(accelerator: str, devices: int) -> None:
    """A job asking for more GPUs than the machine has is skipped (counted without a CUDA context)."""
    present = torch.cuda.device_count() if accelerator == "cuda" else devices
    if devices > present:
        raise DeviceUnavailable(f"device.devices={devices} but this machine has {present} CUDA GPU(s)")


def first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def log_hparams(logger: TensorBoardLogger, cfg: DictConfig, record: ResultsRecord, step: int) -> None:
    """The HParams tab: one row per run, the knobs and the hardware beside the final metrics.

    The metrics sit at the last optimizer step, beside everything else (``logger.log_hyperparams`` puts
    them at step 0); run_name "." keeps them in this run's folder.
    """
    fp = record.fingerprint
    params = {
        "arch": cfg.arch.name, "data": cfg.data._target_.rsplit(".", 1)[-1],
        "device": cfg.device.name, "accelerator": fp.accelerator, "hardware": record.device_name,
        "host": fp.host, "cpu": fp.cpu, "gpu": fp.gpus[0].name if fp.gpus else "none",
        "threads": fp.threads, "world_size": record.world_size, "precision": str(cfg.device.precision),
        "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
        "optimizer": cfg.optim.optimizer._target_.rsplit(".", 1)[-1], "init": cfg.init,
        "compile": str(cfg.compile), "channels_last": cfg.channels_last, "steps_per_execution": cfg.steps_per_execution,
        "inference_batch_size": cfg.inference_batch_size,
    }  # fmt: skip
    metrics = {"hp/test_acc": record.metrics.test_acc, "hp/train_samples_per_sec": record.train_speed.samples_per_sec}
    logger.experiment.add_hparams(params, metrics, run_name=".", global_step=step)
