"""The job's TensorBoard logger: Lightning's, with its writes guarded, and the HParams row of a finished run."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from hwbench.record.results import ResultsRecord
from hwbench.record.writing import writing


class JobLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger, whose failures to write (a full disk) name the folder: every method that
    writes, Lightning's calls included, raises :class:`OutputUnwritable`."""

    @property
    def experiment(self) -> Any:  # creating the writer creates its event file
        with writing(self.log_dir):
            return super().experiment

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        with writing(self.log_dir):
            super().log_metrics(metrics, step)

    def log_hyperparams(self, params: Any, metrics: dict[str, Any] | None = None) -> None:
        with writing(self.log_dir):
            super().log_hyperparams(params, metrics)

    def save(self) -> None:
        with writing(self.log_dir):
            super().save()

    def finalize(self, status: str) -> None:
        with writing(self.log_dir):
            super().finalize(status)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
        "execution": record.execution.kind if record.execution else "eager",
        "execution_mode": str(record.execution.mode if record.execution else None),
        "channels_last": cfg.channels_last, "steps_per_execution": cfg.steps_per_execution,
        "inference_batch_size": cfg.inference_batch_size,
    }  # fmt: skip
    metrics = {"hp/test_acc": record.metrics.test_acc, "hp/train_samples_per_sec": record.train_speed.samples_per_sec}
    logger.experiment.add_hparams(params, metrics, run_name=".", global_step=step)
