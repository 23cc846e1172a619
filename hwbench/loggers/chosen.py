"""The loggers a job's config chose (the ``logger`` group: conf/logger/), made for its folder."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from hwbench.errors import ConfigError
from hwbench.loggers.tracker import Tracker


def job_loggers(cfg: DictConfig, folder: Path, trackers: bool) -> list[Logger]:
    """Every logger ``cfg.logger`` names, TensorBoard first (Lightning's ``trainer.logger`` is the first); the
    trackers only where ``trackers`` (DDP's global rank 0: the run's figures are its own). A tracker that cannot
    run here (MLflow not installed) is refused in one line, before anything trains."""
    made = []
    for node in (cfg.get("logger") or {}).values():
        if not (OmegaConf.is_dict(node) and "_target_" in node):
            continue  # a setting the loggers share (tracking_uri)
        kind = get_class(node._target_)
        tracker = issubclass(kind, Tracker)
        if tracker and (why := kind.unavailable()):
            raise ConfigError(why)
        if trackers or not tracker:
            made.append(instantiate(node, save_dir=str(folder)))
    return sorted(made, key=lambda logger: not isinstance(logger, TensorBoardLogger))


def tensorboard_of(loggers: list[Logger]) -> TensorBoardLogger | None:
    return next((logger for logger in loggers if isinstance(logger, TensorBoardLogger)), None)


def trackers_of(loggers: list[Logger]) -> list[Tracker]:
    return [logger for logger in loggers if isinstance(logger, Tracker)]
