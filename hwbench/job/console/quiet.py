"""Process-wide settings for a quiet, readable benchmark output: called by the entry points."""

from __future__ import annotations

import logging
import warnings

from hwbench.record.writing import quiet_tensorboard_thread


def extras() -> None:
    """Lightning's lines once each, and without its tip or its line for the last epoch reached; the warnings
    below are noise in a benchmark's output."""
    quiet_lightning()
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval")  # hwbench logs once an epoch
    warnings.filterwarnings("ignore", message=".*treespec, LeafSpec")
    warnings.filterwarnings("ignore", message="Total length of `list` across ranks is zero")  # val_size=0
    quiet_tensorboard_thread()  # a full disk: one line from the job, not the writer thread's traceback


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
