"""Hydra callbacks: what must happen around the jobs rather than inside one."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
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


class ShowResults(Callback):
    """After a run or a sweep: where its results are, and the two commands that open them."""

    def on_run_end(self, config: DictConfig, job_return: JobReturn | None = None, **kwargs: Any) -> None:
        if job_return is not None and job_return.hydra_cfg is not None and process_rank() == 0:
            print(results_lines(Path(job_return.hydra_cfg.hydra.runtime.output_dir)), flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        print(results_lines(Path(str(config.hydra.sweep.dir))), flush=True)


def results_lines(folder: Path) -> str:
    relative = os.path.relpath(folder)
    where = shlex.quote(folder.as_posix() if relative.startswith("..") else relative)
    return f"results in {where}\n  tensorboard --logdir {where}\n  hwbench-compare {where}"
