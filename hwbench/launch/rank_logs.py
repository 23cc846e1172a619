"""A rank's own log file, for ranks that torchrun or srun started under the job's own name."""

from __future__ import annotations

import logging
from logging import Logger
from pathlib import Path


def move_file_logs(log: Path) -> None:
    """This rank's log lines into ``log``, not rank 0's file: Hydra opened the job's log file by the job's name,
    the same on every rank torchrun or srun started (hwbench.launch.ddp names its ranks' jobs apart instead)."""
    loggers = [logging.getLogger(), *(v for v in logging.root.manager.loggerDict.values() if isinstance(v, Logger))]
    moved: dict[logging.Handler, logging.Handler] = {}
    for logger in loggers:
        for handler in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
            if handler not in moved:
                moved[handler] = type(handler)(log, encoding=handler.encoding)
                moved[handler].setFormatter(handler.formatter)
                moved[handler].setLevel(handler.level)
                handler.close()
            logger.removeHandler(handler)
            logger.addHandler(moved[handler])
