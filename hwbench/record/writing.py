"""Writing a job's outputs on a disk that can fill up: an I/O error from whichever library writes (the record,
TensorBoard, the log file, Hydra's copy of the config) ends as one line naming the folder, never a traceback."""

from __future__ import annotations

import errno
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
    """Within the block, an I/O error is a failure to write into ``folder``: :class:`OutputUnwritable`."""
    try:
        yield
    except Exception as err:
        if (words := io_error(err)) is None:
            raise
        raise OutputUnwritable(Path(folder), *words) from err  # Path: no trailing slash (TensorBoard's log_dir has one)


def io_error(err: BaseException | None) -> tuple[str, bool] | None:
    """The system's words for a failed write and whether the disk is full; None for an error that is not I/O.

    The I/O error may be the cause of the one raised: Lightning's TensorBoard logger turns every error into a
    ValueError. TensorBoard writes through TensorFlow's file layer where TensorFlow is installed: its errors
    (``OpError``, a "path; words" message) are no OSErrors."""
    while err is not None:
        if isinstance(err, OSError):
            return err.strerror or str(err), err.errno in (errno.ENOSPC, errno.EDQUOT)
        if type(err).__module__.startswith("tensorflow.") and isinstance(words := getattr(err, "message", None), str):
            return words.rsplit("; ", 1)[-1], type(err).__name__ == "ResourceExhaustedError"
        err = err.__cause__ or err.__context__
    return None


def exit_unwritable(err: OutputUnwritable | str, sweeping: bool) -> NoReturn:
    """One line and exit 1; a sweep stops, since every later job would write to the same place."""
    sys.exit(f"error: {err}" + ("; the sweep stops here: no further job starts" if sweeping else ""))


class JobLogFile(logging.FileHandler):
    """The job's log file (``hwbench.log``, set in hydra.job_logging). A line it cannot write (a full disk) is
    dropped without logging's traceback: the job meets the same error in TensorBoard or its record, and says so."""

    def handleError(self, record: logging.LogRecord) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a formatting mistake still gets logging's report
            super().handleError(record)


def quiet_tensorboard_thread() -> None:
    """TensorBoard writes its event files from a thread. Its error (a full disk) is raised again in the main
    thread at the next write, and reported there in one line: the thread's own traceback is left unprinted."""
    default = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (isinstance(args.exc_value, Exception) and type(args.thread).__module__.startswith("tensorboard.")):
            default(args)

    threading.excepthook = hook
