"""One job: build everything from the config, train, test, and record the results."""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from hwbench.classifier import Classifier
from hwbench.config import check
from hwbench.devices import configure_backend, resolve_accelerator
from hwbench.errors import DeviceUnavailable, HwbenchError, Interrupted
from hwbench.fingerprint import as_markdown, fingerprint
from hwbench.interrupts import signals_raise_interrupted
from hwbench.models import init_weights
from hwbench.monitor import BenchmarkMonitor
from hwbench.results import Fingerprint, Interruption, Metrics, ResultsRecord, now, refuse_taken, write_record

CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def compile_net(net: torch.nn.Module, setting: bool | str) -> torch.nn.Module:
    """``torch.compile`` in the config's mode (``true``: the default mode), from a clean slate.

    The reset is what a fresh process would give: jobs of a multirun share one process, and the
    previous job's CUDA-graph trees broke the next capture (seen: the 4th speedrun seed failed with
    "CUDA driver error: invalid argument"). Compiled code stays cached on disk.
    """
    torch.compiler.reset()
    return torch.compile(net, mode="default" if setting is True else setting)


def build(cfg: DictConfig) -> tuple[Classifier, L.LightningDataModule]:
    net = init_weights(instantiate(cfg.arch.net), cfg.init)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if cfg.compile:
        net = compile_net(net, cfg.compile)
    model = Classifier(
        net,
        optimizer=instantiate(cfg.optim.optimizer),
        scheduler=instantiate(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
        one_hot_targets=cfg.one_hot_targets,
        channels_last=cfg.channels_last,
        copy_logits=cfg.compile in CUDA_GRAPH_MODES,
    )
    return model, instantiate(cfg.data)


def run(cfg: DictConfig, out_dir: Path) -> ResultsRecord:
    """Train and test one configuration and write its results record, whatever happens.

    Returns the record (ok, skipped, failed or diverged); raises ``Interrupted`` after recording what
    finished, and ``OutputFolderTaken`` before writing anything.
    """
    start = time.perf_counter()
    refuse_taken(out_dir)
    record = ResultsRecord.start(cfg)
    write_record(out_dir, record)  # claims the folder; a killed job leaves "running", never nothing
    monitor = BenchmarkMonitor(cfg.warmup_steps, cfg.inference_batch_size)
    logger: TensorBoardLogger | None = None
    try:
        with signals_raise_interrupted():
            check(cfg)
            accelerator = resolve_accelerator(cfg.device.accelerator)
            threads = configure_backend(cfg.device)
            record.fingerprint = Fingerprint(**fingerprint(threads, str(cfg.device.precision), accelerator))
            L.seed_everything(cfg.seed, verbose=False)
            model, datamodule = build(cfg)
            logger = TensorBoardLogger(save_dir=out_dir, name="", version="", default_hp_metric=False)
            logger.experiment.add_text("fingerprint", as_markdown(record.fingerprint.model_dump()))
            trainer = make_trainer(cfg, accelerator, logger, monitor)
            trainer.fit(model, datamodule=datamodule)
            if model.diverged_epoch is not None:
                record.status, record.diverged_epoch = "diverged", model.diverged_epoch
                record.reason = (
                    f"the training loss is not finite in epoch {model.diverged_epoch}: training stopped there; "
                    f"lower the learning rate (lr={cfg.lr})"
                )
            else:
                (test,) = trainer.test(model, datamodule=datamodule, verbose=False)
                record.metrics = Metrics(test_acc=test["test/acc"], test_loss=test["test/loss"])
                record.status = "ok"
    except DeviceUnavailable as err:
        record.status, record.reason = "skipped", str(err)
    except HwbenchError as err:
        record.status, record.reason = "failed", str(err)
    except Interrupted as err:
        monitor.summarize(partial=True)
        record.status, record.reason = "interrupted", f"{err.signal_name} after {len(monitor.epochs)} epoch(s)"
        record.interruption = Interruption(
            signal=err.signal_name, epochs_finished=len(monitor.epochs), steps_finished=getattr(monitor, "batches", 0)
        )
        raise
    except Exception as err:  # unexpected: the record keeps the traceback, the screen gets one line
        record.status, record.reason = "failed", f"{type(err).__name__}: {first_line(err)}"
        record.traceback = traceback.format_exc()
    finally:
        measured = {**monitor.results, "epoch_table": monitor.epochs}
        done = {"finished": now(), "wall_seconds": time.perf_counter() - start}
        record = ResultsRecord.model_validate(record.model_dump() | measured | done)
        write_record(out_dir, record)
        if logger is not None:
            if record.status == "ok":
                log_hparams(logger, cfg, record)
            logger.finalize("success" if record.status == "ok" else "failed")  # flushes the event file
    return record


def first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def make_trainer(cfg: DictConfig, accelerator: str, logger: TensorBoardLogger, monitor: BenchmarkMonitor) -> L.Trainer:
    every = max(1, cfg.log_every_n_steps // cfg.steps_per_execution)  # in Lightning steps
    return L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=cfg.device.precision,
        max_epochs=cfg.epochs,
        logger=logger,
        # TQDM refreshed every ~log_every_n_steps optimizer steps costs nothing measurable (the rich bar
        # redraws every step); its counts are Lightning steps, each steps_per_execution optimizer steps
        callbacks=[monitor, TQDMProgressBar(refresh_rate=every)],
        log_every_n_steps=every,
        num_sanity_val_steps=0,  # a benchmark has no use for a warm-up validation pass
        enable_checkpointing=False,
        enable_model_summary=False,
        benchmark=cfg.device.cudnn_benchmark,
    )


def log_hparams(logger: TensorBoardLogger, cfg: DictConfig, record: ResultsRecord) -> None:
    """The HParams tab: one row per run, the knobs beside the final metrics."""
    params = {
        "arch": cfg.arch.name, "data": cfg.data._target_.rsplit(".", 1)[-1],
        "device": cfg.device.name, "accelerator": record.fingerprint.accelerator,
        "precision": str(cfg.device.precision), "threads": record.fingerprint.threads,
        "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
        "optimizer": cfg.optim.optimizer._target_.rsplit(".", 1)[-1], "init": cfg.init,
        "compile": str(cfg.compile), "channels_last": cfg.channels_last, "steps_per_execution": cfg.steps_per_execution,
    }  # fmt: skip
    metrics = {"hp/test_acc": record.metrics.test_acc, "hp/train_samples_per_sec": record.train_speed.samples_per_sec}
    logger.log_hyperparams(params, metrics)
