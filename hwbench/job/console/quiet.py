"""Process-wide settings for a quiet, readable benchmark output: called by the entry points."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from hwbench.record.writing import quiet_tensorboard_thread


def extras() -> None:
    """Lightning's lines once each, and without its tip or its line for the last epoch reached; the warnings
    below are noise in a benchmark's output."""
    quiet_lightning()
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval")  # hwbench logs once an epoch
    warnings.filterwarnings("ignore", message=".*treespec, LeafSpec")
    warnings.filterwarnings("ignore", message="Total length of `list` across ranks is zero")  # val_size=0
    quiet_tensorboard_thread()  # a full disk: one line from the job, not the writer thread's traceback
    hints_to_log()


# Lightning's hints that are true of the machine, not the run: every job on a machine with SLURM installed (a
# cluster's login node, a laptop with scripts/local_slurm.sh) gets the first; hwbench starts its ranks itself
LOG_ONLY_WARNINGS = ("The `srun` command is available on your system but is not used",)
LOG_ONLY = "hwbench.log_only"  # a logger that writes the job's log file alone (conf/hydra/job_logging/hwbench.yaml)


def hints_to_log() -> None:
    """The warnings of LOG_ONLY_WARNINGS into the job's log file, off the screen (warnings.showwarning is the hook
    Python gives for where a warning goes; filterwarnings could only drop it)."""
    shown = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, *args: Any) -> None:
        if str(message).startswith(LOG_ONLY_WARNINGS):
            logging.getLogger(LOG_ONLY).warning("%s: %s", category.__name__, message)
        else:
            shown(message, category, filename, lineno, *args)

    warnings.showwarning = show


def quiet_lightning() -> None:
    """``import lightning`` gives its logger a console handler of its own; Hydra's handlers on the root logger
    already print and file every line, so with it each Lightning line would print twice. Call it again after
    importing Lightning where that comes late (the CLI parses its arguments first). Idempotent."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # imported before the root had handlers
        own = logging.getLogger(name)  # (the job template's): Lightning gave them one and stopped propagation
        own.handlers.clear()
        own.propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(not_noise)
    # Lightning logs from inside its SIGTERM handler: a signal that lands while a line is being written makes that
    # a reentrant write to the same file, and a traceback on the screen. hwbench names the signal itself.
    logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector").setLevel(logging.WARNING)


def not_noise(record: logging.LogRecord) -> bool:
    """Not Lightning's advertising tip, nor its "`Trainer.fit` stopped: `max_epochs=5` reached.": the end every
    run has, printed before the last epoch's line (whose training figures come after it)."""
    message = record.getMessage()
    return "Tip:" not in message and not message.startswith("`Trainer.fit` stopped: `max_epochs=")
