"""Hydra callbacks: what must happen around the jobs rather than inside one."""

from __future__ import annotations

import contextlib
import copy
import errno
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hwbench.commands import command, shell_path
from hwbench.errors import ConfigError, OutputFolderTaken, OutputUnwritable, one_line
from hwbench.hydra_adapters.hydra_errors import hwbench_error
from hwbench.hydra_adapters.sweep_time import sweep_records
from hwbench.job.folders import plain_name
from hwbench.launch import slurm, torchrun
from hwbench.launch.ddp import console_to_log, process_rank
from hwbench.launch.process import job_process, not_ok_in, not_ok_line
from hwbench.launch.rank_logs import move_file_logs
from hwbench.loggers.store import SQLITE, mlflow_missing, prepare_store, sqlite_path, uses_mlflow
from hwbench.record.results import refuse_taken
from hwbench.record.writing import exit_unwritable, writing

PROBE_BYTES = 64 * 1024  # room for Hydra's own files (multirun.yaml, .hydra/) before it writes them
CONFIG_COPY = ".hydra"  # Hydra's usual folder for its copy of a job's config


class PrepareTrackers(Callback):
    """Before any job starts, where the config logs to MLflow: MLflow is installed (else one line and exit 1); and
    before a sweep, a new SQLite store's tables, made here once rather than by its jobs at once (mlflow #6490)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if process_rank() == 0 and job_process() is None:  # the process that started this one has checked
            mlflow_installed_or_exit(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if mlflow_installed_or_exit(config):  # the sweep's own choice: a job whose swept logger is MLflow checks
            new_store(str(config.logger.tracking_uri))


def mlflow_installed_or_exit(config: DictConfig) -> bool:
    """Whether the config logs to MLflow; where it does and MLflow is not installed, one line and exit 1."""
    if not uses_mlflow(config.get("logger")):
        return False
    if missing := mlflow_missing():
        sys.exit(f"error: {missing}")
    return True


def new_store(uri: str) -> None:
    """A SQLite store's tables where it has none yet (MLflow makes a store's tables only when it is empty)."""
    db = sqlite_path(uri)
    if db is None or (os.path.isfile(db) and os.path.getsize(db) > 0):
        return
    try:
        prepare_store(uri)
    except Exception as err:  # each job tries it again, and says so in a line where it cannot log there
        print(f"warning: cannot make the MLflow store {uri} ({one_line(err, 200)})", file=sys.stderr, flush=True)


class CheckOutputFolder(Callback):
    """Before any job starts, make sure its output folder can be written: else one line and exit 1."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        plain_job_name(config)
        if why := torchrun.unpinned_folder(config):  # before any rank resolves a folder of its own
            sys.exit(f"error: {why}")
        folder = writable_or_exit(config, "hydra.run.dir")
        if process_rank() > 0:  # a DDP rank >= 1 joins the folder its rank 0 has claimed
            return
        try:  # before Hydra writes its own files there
            refuse_taken(folder)
        except OutputFolderTaken as err:
            sys.exit(f"error: {config.run_name}: {err}")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        plain_job_name(config)
        if why := torchrun.unpinned_folder(config):
            sys.exit(f"error: {why}")
        writable_or_exit(config, "hydra.sweep.dir")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Hydra's copy of the job's config, written here rather than by Hydra (config.yaml sets
        hydra.output_subdir to null): a full disk gets one line, and a sweep stops there."""
        if process_rank() > 0:  # rank 0 has written it, and speaks for the job: this rank's lines go to its log
            external = torchrun.rank_log_name() or slurm.rank_log_name()  # hwbench names the ranks it starts
            log = Path(config.hydra.runtime.output_dir) / f"{external or config.hydra.job.name}.log"
            if external:  # started by torchrun or srun under the job's own name: its log file is rank 0's
                move_file_logs(log)
            console_to_log(log)
            return
        if job_process() is not None:  # the process that started this one has written it
            return
        save_config_copy(config)


def save_config_copy(config: DictConfig) -> None:
    """``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml``, as Hydra's run_job writes them."""
    job = copy.deepcopy(config)
    with read_write(job), open_dict(job):
        del job["hydra"]
    overrides = config.hydra.overrides.task
    files = {"config.yaml": job, "hydra.yaml": HydraConfig.instance().cfg, "overrides.yaml": overrides}
    folder = Path(config.hydra.runtime.output_dir) / CONFIG_COPY
    try:
        with writing(folder):
            folder.mkdir(exist_ok=True)
            for name, cfg in files.items():
                (folder / name).write_text(OmegaConf.to_yaml(cfg), encoding="utf-8")
    except OutputUnwritable as err:
        exit_unwritable(err, sweeping=config.hydra.mode == RunMode.MULTIRUN)


def plain_job_name(config: DictConfig) -> None:
    """hydra.job.name names the job's log file: never one outside the job's folder (before anything is created)."""
    try:
        plain_name("hydra.job.name", str(config.hydra.job.name))
    except ConfigError as err:
        sys.exit(f"error: {err}")


def writable_or_exit(config: DictConfig, key: str) -> Path:
    folder = None
    try:
        folder = Path(str(OmegaConf.select(config, key)))  # resolving the run dir claims it (config.fresh_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:  # bytes, not only a name: a full disk fails here
            probe.write(bytes(PROBE_BYTES))
            probe.flush()
            os.fsync(probe.fileno())
        return folder
    except Exception as err:
        if refused := hwbench_error(err):  # a folder the config names outside output_root: nothing created
            sys.exit(f"error: {refused}")
        err = raised_os_error(err)
        os_error = isinstance(err, OSError) and err.strerror
        what = f"{err.strerror}: {err.filename or folder}" if os_error else str(err)  # type: ignore[attr-defined]
        fix = "free some space there or set" if getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT) else "set"
        sys.exit(
            f"error: cannot write the output folder under output_root={config.output_root} ({what}): "
            f"{fix} output_root to a folder you can write, e.g. output_root=$HOME/hwbench-outputs"
        )


def raised_os_error(err: BaseException) -> BaseException:
    """The OSError under OmegaConf's wrapping of what the resolver raised, else the innermost error. Not the
    innermost OSError: mkdir(parents=True) raises a parent's EROFS while handling its own ENOENT."""
    while not isinstance(err, OSError) and (inner := err.__cause__ or err.__context__) is not None:
        err = inner
    return err


def basic_launcher(config: DictConfig) -> bool:
    """Whether Hydra's basic launcher ran the sweep: each job under this process (the group's public choice)."""
    return OmegaConf.select(config, "hydra.runtime.choices", default={}).get("hydra/launcher") == "basic"


class ShowResults(Callback):
    """After a run or a sweep: where its results are, and the two commands that open them; under a launcher that
    ran the jobs in processes of its own, the jobs that did not end ok, and exit 1 (the basic launcher's jobs
    report to this process: hwbench.cli.Outcomes names them)."""

    def on_run_end(self, config: DictConfig, job_return: JobReturn | None = None, **kwargs: Any) -> None:
        started = process_rank() > 0 or job_process() is not None  # the process that started this one says it
        if job_return is not None and job_return.hydra_cfg is not None and not started:
            print(results_lines(Path(job_return.hydra_cfg.hydra.runtime.output_dir), config.get("logger")), flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        print(results_lines(sweep, config.get("logger")), flush=True)
        if basic_launcher(config):
            return
        drop_unformatted_folder(OmegaConf.select(config, "hydra.launcher.submitit_folder"))
        if not_ok := not_ok_in(sweep):  # their own processes printed their lines to their logs (.submitit/)
            sys.exit(not_ok_line(not_ok))
        if skipped := only_skipped(sweep):
            sys.exit(nothing_ran_line(skipped))


def nothing_ran_line(skipped: list[str]) -> str:
    """A sweep's closing line where every job was skipped: nothing it asked for ran on this machine (exit 1, as a
    single skipped run)."""
    return (f"error: every job was skipped, none ran: {', '.join(skipped)} (their results.json say why: a device "
            f"or an execution this machine lacks)")  # fmt: skip


def only_skipped(sweep: Path) -> list[str]:
    """The jobs of a sweep folder where every job was skipped (else none): a launcher's own processes ran them."""
    statuses = {name: record.status for name, record in sweep_records(sweep).items()}
    return list(statuses) if statuses and set(statuses.values()) == {"skipped"} else []


def drop_unformatted_folder(folder: str | None) -> None:
    """submitit_local's controller makes its folder as the config names it, a literal ``.submitit/%j`` beside the
    jobs' own folders: removed when empty."""
    if folder and "%" in folder:
        with contextlib.suppress(OSError):  # not there, or not empty: left as it is
            Path(folder).rmdir()


def results_lines(folder: Path, logger: DictConfig | None = None) -> str:
    """The folder, and the commands that open it as this shell runs them (hwbench/commands.py): TensorBoard
    where it logged, compare, and MLflow's UI on the store (or the server) where MLflow logged."""
    where = shell_path(folder)
    lines = [f"results in {where}"]
    if logger is None or "tensorboard" in logger:
        lines.append(f"  {command('tensorboard')} --logdir {where}")
    lines.append(f"  {command('hwbench-compare')} {where}")
    if uses_mlflow(logger):
        uri = str(logger.tracking_uri)  # type: ignore[union-attr]
        db = sqlite_path(uri)
        lines.append(f"  {command('mlflow')} ui --backend-store-uri {shell_path(Path(db), prefix=SQLITE)}" if db
                     else f"  MLflow: {shlex.quote(uri)}")  # fmt: skip
    return "\n".join(lines)
