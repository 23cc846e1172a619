"""What a job prints: each log line on a line of its own, above the progress bar, without Hydra's prefixes.

Hydra's job logging (conf/hydra/job_logging/hwbench.yaml) names these classes; the job's log file keeps the
time and the source of every line.
"""

from __future__ import annotations

import logging
import threading

from tqdm import tqdm


class BarSafeHandler(logging.StreamHandler):
    """Writes through ``tqdm.write``: the progress bar is cleared, the line printed, the bar drawn again below
    it (as ``tqdm.contrib.logging`` does), so a line never lands on the end of the bar."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # a thread lock for tqdm, not its default process-shared semaphore: a job's bar and lines are its own
        # process's, and a killed job would leave the semaphore to its sweep's resource tracker (a warning at exit)
        tqdm.set_lock(threading.RLock())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # as logging.StreamHandler does: a failed write is reported, never raised
            self.handleError(record)


class ScreenFormatter(logging.Formatter):
    """The message alone; a warning or an error says so in front, as hwbench's own lines do ('warning: ...')."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"
