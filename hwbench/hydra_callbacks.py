"""Hydra callbacks: what must happen around the jobs rather than inside one."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from hwbench.ddp import process_rank
from hwbench.errors import OutputFolderTaken
from hwbench.results import refuse_taken


class CheckOutputFolder(Callback):
    """Before any job starts, make sure its output folder can be written: else one line and exit 1."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = writable_or_exit(config, "hydra.run.dir")
        if process_rank() > 0:  # a DDP rank >= 1 joins the folder its rank 0 has claimed
            return
        try:  # before Hydra writes its own files there
            refuse_taken(folder)
        except OutputFolderTaken as err:
            sys.exit(f"error: {config.run_name}: {err}")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        writable_or_exit(config, "hydra.sweep.dir")


def writable_or_exit(config: DictConfig, key: str) -> Path:
    try:
        folder = Path(str(OmegaConf.select(config, key)))  # resolving the run dir claims it (config.fresh_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return folder
    except Exception as err:
        while (inner := err.__cause__ or err.__context__) is not None:  # OmegaConf wraps what the resolver raised
            err = inner  # type: ignore[assignment]
        what = f"{err.strerror}: {err.filename}" if isinstance(err, OSError) and err.strerror else str(err)
        sys.exit(
            f"error: cannot write the output folder under output_root={config.output_root} ({what}): "
            f"set output_root to a folder you can write, e.g. output_root=$HOME/hwbench-outputs"
        )
