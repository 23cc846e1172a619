"""Process-wide settings for a quiet, readable benchmark output: called once by the entry points."""

from __future__ import annotations

import logging
import warnings

from hwbench.outputs import quiet_tensorboard_thread


def extras() -> None:
    """Hydra already logs to the console and to the job's log file: Lightning's own console handler would
    print every line twice. Its advertising tip and the warnings below are noise in a benchmark's output."""
    logging.getLogger("lightning").handlers.clear()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "Tip:" not in r.getMessage())
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval")  # hwbench logs once an epoch
    warnings.filterwarnings("ignore", message=".*treespec, LeafSpec")
    warnings.filterwarnings("ignore", message="Total length of `list` across ranks is zero")  # val_size=0
    quiet_tensorboard_thread()  # a full disk: one line from the job, not the writer thread's traceback
