"""One job: build everything from the config, train, test, and record the results."""

from __future__ import annotations

import logging
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from hwbench.classifier import Classifier
from hwbench.devices import configure_backend, resolve_accelerator
from hwbench.errors import ConfigError, DeviceUnavailable
from hwbench.fingerprint import as_markdown, fingerprint
from hwbench.models import init_weights
from hwbench.monitor import BenchmarkMonitor
from hwbench.results import write_record

# Hydra already logs to the console and to the job's log file: Lightning's own console handler would
# print every line twice. Its advertising tip and the warning about log_every_n_steps (hwbench logs once
# an epoch by design) are noise in a benchmark's output.
logging.getLogger("lightning").handlers.clear()
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "Tip:" not in r.getMessage())
warnings.filterwarnings("ignore", message=".*smaller than the logging interval")
warnings.filterwarnings("ignore", message=".*treespec, LeafSpec")
warnings.filterwarnings("ignore", message="Total length of `list` across ranks is zero")  # val_size=0: no validation

PRECISIONS = ("32", "16-mixed", "bf16-mixed")
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def check_config(cfg: DictConfig) -> None:
    """Catch values that would fail deep inside training, and say how to fix them."""

    def positive_int(key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}: set e.g. {key}=5")

    positive_int("epochs", cfg.epochs)
    positive_int("batch_size", cfg.batch_size)
    positive_int("warmup_steps", cfg.warmup_steps)
    positive_int("steps_per_execution", cfg.steps_per_execution)
    if cfg.device.threads is not None:
        positive_int("device.threads", cfg.device.threads)
    if not isinstance(cfg.lr, (int, float)) or cfg.lr <= 0:
        raise ConfigError(f"lr must be a positive number, got {cfg.lr!r}: set e.g. lr=0.01")
    if str(cfg.device.precision) not in PRECISIONS:
        raise ConfigError(f"device.precision must be one of {', '.join(PRECISIONS)}, got {cfg.device.precision!r}")
    if cfg.compile not in COMPILE_MODES:
        raise ConfigError(f"compile must be false, true or a torch.compile mode ({', '.join(COMPILE_MODES[2:])})")
    if cfg.init not in ("torch", "keras"):
        raise ConfigError(f"init must be torch or keras, got {cfg.init!r}")


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


def new_record(cfg: DictConfig) -> dict[str, Any]:
    return {
        "status": "running",
        "reason": None,
        "run_name": cfg.run_name,
        "arch": cfg.arch.name,
        "device": cfg.device.name,
        "epochs": cfg.epochs,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def run(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Train and test one configuration; the results record is written even if the job fails."""
    start = time.perf_counter()
    record = new_record(cfg)
    monitor = BenchmarkMonitor(cfg.warmup_steps, cfg.inference_batch_size)
    try:
        check_config(cfg)
        accelerator = resolve_accelerator(cfg.device.accelerator)
        threads = configure_backend(cfg.device)
        record["fingerprint"] = fingerprint(threads, str(cfg.device.precision), accelerator)
        L.seed_everything(cfg.seed, verbose=False)
        model, datamodule = build(cfg)
        logger = TensorBoardLogger(save_dir=out_dir, name="", version="", default_hp_metric=False)
        logger.experiment.add_text("fingerprint", as_markdown(record["fingerprint"]))
        every = max(1, cfg.log_every_n_steps // cfg.steps_per_execution)  # in Lightning steps
        trainer = L.Trainer(
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
        trainer.fit(model, datamodule=datamodule)
        (test,) = trainer.test(model, datamodule=datamodule, verbose=False)
        record["metrics"] = {"test_acc": test["test/acc"], "test_loss": test["test/loss"]}
        record["status"] = "ok"
    except DeviceUnavailable as err:
        record.update(status="skipped", reason=f"skipped: {err}")
        raise
    except BaseException as err:
        record.update(status="failed", reason=str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise
    finally:
        record.update(monitor.results, epoch_table=monitor.epochs, wall_seconds=time.perf_counter() - start)
        write_record(out_dir, record)
    log_hparams(logger, cfg, record)
    return record


def log_hparams(logger: TensorBoardLogger, cfg: DictConfig, record: dict[str, Any]) -> None:
    """The HParams tab: one row per run, the knobs beside the final metrics."""
    params = {
        "arch": cfg.arch.name, "data": cfg.data._target_.rsplit(".", 1)[-1],
        "device": cfg.device.name, "accelerator": record["fingerprint"]["accelerator"],
        "precision": str(cfg.device.precision), "threads": record["fingerprint"]["threads"],
        "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
        "optimizer": cfg.optim.optimizer._target_.rsplit(".", 1)[-1], "init": cfg.init,
        "compile": str(cfg.compile), "channels_last": cfg.channels_last, "steps_per_execution": cfg.steps_per_execution,
    }  # fmt: skip
    metrics = {"hp/test_acc": record["metrics"]["test_acc"], "hp/train_samples_per_sec": train_samples_per_sec(record)}
    logger.log_hyperparams(params, metrics)
    logger.finalize("success")


def train_samples_per_sec(record: dict[str, Any]) -> float:
    """The headline training speed: steady state when there is one, else overall."""
    return (record.get("steady") or record["overall"])["samples_per_sec"]


def summary_line(record: dict[str, Any]) -> str:
    name = f"{record['arch']} {record['device']} epochs={record['epochs']}"
    if record["status"] != "ok":
        return f"{name}: {record['reason']}"
    which = "steady" if record.get("steady") else "overall"
    return (
        f"{name}: test acc {record['metrics']['test_acc']:.4f}, "
        f"train {train_samples_per_sec(record):,.0f} samples/s ({which}), wall {record['wall_seconds']:.1f} s"
    )
