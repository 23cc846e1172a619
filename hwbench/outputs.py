"""Writing a job's outputs on a disk that can fill up: an OSError from whichever library writes (the record,
TensorBoard, the log file, Hydra's copy of the config) ends as one line naming the folder, never a traceback."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from hwbench.errors import OutputUnwritable


@contextmanager
def writing(folder: str | Path) -> Iterator[None]:
    """Within the block, an OSError is a failure to write into ``folder``: :class:`OutputUnwritable`."""
    try:
        yield
    except OSError as err:
        raise OutputUnwritable(Path(folder), err) from err  # Path: no trailing slash (TensorBoard's log_dir has one)


def exit_unwritable(err: OutputUnwritable, sweeping: bool) -> NoReturn:
    """One line and exit 1; a sweep stops, since every later job would write to the same place."""
    sys.exit(f"error: {err}" + ("; the sweep stops here: no further job starts" if sweeping else ""))


class JobLogFile(logging.FileHandler):
    """The job's log file (``hwbench.log``, set in hydra.job_logging). A line it cannot write (a full disk) is
    dropped without logging's traceback: the job meets the same error in TensorBoard or its record, and says so."""

    def handleError(self, record: logging.LogRecord) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handleError(record)


def quiet_tensorboard_thread() -> None:
    """TensorBoard writes its event files from a thread. Its OSError is raised again in the main thread at the
    next write, and reported there in one line: the thread's own traceback is left unprinted."""
    default = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (isinstance(args.exc_value, OSError) and type(args.thread).__module__.startswith("tensorboard.")):
            default(args)

    threading.excepthook = hook
