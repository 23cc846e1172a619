"""``python -m hwbench``: Hydra runs one job or a sweep of them; each ends with one line."""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from hwbench.errors import ConfigError, HwbenchError, Interrupted, OutputUnwritable, one_line
from hwbench.hydra_adapters.hydra_callbacks import nothing_ran_line
from hwbench.hydra_adapters.hydra_errors import errors_as_one_line
from hwbench.hydra_adapters.repeats import interleaved
from hwbench.job.config import config_dir, register
from hwbench.launch.ddp import process_rank
from hwbench.launch.process import (
    Outcome,
    job_process,
    not_ok_in,
    not_ok_line,
    report,
    run_in_job_process,
    shared_reason,
)
from hwbench.launch.signals import signals_raise_interrupted
from hwbench.launch.slurm import stops_to_the_job, under_submitit
from hwbench.record.writing import exit_unwritable

UNWRITABLE = "unwritable"  # an outcome's status where the job could not write its outputs (a full disk)
SUMMARY_LOG = "hwbench.summary"  # the job's closing line, into its log file (conf/hydra/job_logging/hwbench.yaml)


@dataclass
class Outcomes:
    """What the jobs of this process ended as: a sweep goes on past a bad job, and its exit status says so. The
    rule, one for a single run and a sweep: exit 0 when every job ended ok or skipped and one at least ran; 1 when
    a job did not end ok or skipped, or when every job was skipped (nothing ran)."""

    not_ok: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ran: int = 0

    def job(self, cfg: DictConfig) -> None:
        hydra_cfg = HydraConfig.get()
        sweeping = hydra_cfg.mode == RunMode.MULTIRUN
        folder = Path(hydra_cfg.runtime.output_dir)
        if process_rank() > 0:  # a DDP rank >= 1: rank 0 speaks for the job
            with contextlib.suppress(Interrupted) if under_submitit() else contextlib.nullcontext():
                run_here(cfg, folder)  # under submitit a task that raised would fail the whole job's result
            return
        if job_process() is not None:  # the job's own process: its outcome goes to the process that started it
            try:
                report(run_here(cfg, folder))
            except OutputUnwritable as err:
                report(Outcome(str(err), UNWRITABLE))
            return
        shared = shared_reason()
        try:
            with stops_to_the_job():
                outcome = run_here(cfg, folder, shared) if shared else run_in_job_process(cfg, folder)
        except OutputUnwritable as err:  # writing the record of a job whose process died
            outcome = Outcome(str(err), UNWRITABLE)
        except Interrupted as err:  # scancel, a time limit: the job recorded what it finished
            if not under_submitit():  # the sweep stops here; under submitit this process held this job alone
                raise
            outcome = Outcome(f"{cfg.run_name}: {err}: the finished epochs are in its results.json", "interrupted")
        self.conclude(outcome, folder, sweeping)

    def conclude(self, outcome: Outcome, folder: Path, sweeping: bool) -> None:
        """The job's closing line, where it belongs; a single run that did not end ok exits non-zero."""
        line, status = outcome.line, outcome.status
        if status == UNWRITABLE:  # a full disk: every later job would meet it too
            exit_unwritable(line, sweeping)
        logging.getLogger(SUMMARY_LOG).info(line)
        if status == "ok" or (sweeping and status == "skipped"):
            print(line, flush=True)
            self.ran += status == "ok"
            if status == "skipped":
                self.skipped.append(folder.name)
        elif sweeping:
            print(line, file=sys.stderr, flush=True)
            self.not_ok.append(f"{folder.name} ({outcome.died or status})")  # the folder: jobs may share a name
        else:
            sys.exit(f"error: {line}")


def run_here(cfg: DictConfig, folder: Path, shared: str | None = None) -> Outcome:
    """Run the job in this process; its outcome (raises OutputUnwritable on a full disk, Interrupted on a stop
    signal, both once the record has had its try)."""
    from hwbench.job.console.quiet import quiet_lightning
    from hwbench.job.runner import run  # torch and Lightning load after Hydra has parsed the arguments

    quiet_lightning()  # importing Lightning gave it a console handler again
    try:
        record = run(cfg, folder, shared)
    except OutputUnwritable:
        raise
    except HwbenchError as err:  # the folder is taken: nothing was run or written
        return Outcome(f"{cfg.run_name}: {err}", "failed")
    return Outcome(record.summary(), record.status)


def sweep_not_ok() -> list[str]:
    """The jobs of the sweep this process ran that did not end ok, from their records (none where it is unknown)."""
    try:
        return not_ok_in(Path(HydraConfig.get().sweep.dir))
    except (ValueError, OSError):  # no Hydra config set, or no sweep folder
        return []


def main() -> None:
    from hwbench.job.console.quiet import extras

    register()
    extras()
    if job_process() is None and process_rank() == 0:  # the command a user typed (a job process's is hwbench's)
        try:
            sys.argv = interleaved(sys.argv)
        except ConfigError as err:
            sys.exit(f"error: {err}")
    outcomes = Outcomes()
    app = hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")(outcomes.job)
    try:
        with signals_raise_interrupted(), errors_as_one_line():
            app()
    except Interrupted as err:  # the interrupted job has recorded what it finished; no further job starts
        if job_process() is not None:  # the process that started this one says so
            report(Outcome(str(err), "interrupted", signum=err.signum))
            sys.exit(128 + err.signum)
        print(f"error: {err}: the finished epochs are in the job's results.json", file=sys.stderr, flush=True)
        sys.exit(128 + err.signum)
    except Exception as err:
        if not type(err).__module__.startswith("submitit."):
            raise
        # submitit's own process for a job died (killed, out of memory) before the job reported: the launcher raises
        died = f"a job's submitit process died before the job reported ({one_line(err, first_only=True)})"
        if not_ok := sweep_not_ok():  # SLURM killed a job (scancel, a time limit) before its task returned
            sys.exit(f"{not_ok_line(not_ok)}; {died}")
        sys.exit(f"error: {died}: its log is in the sweep folder's .submitit/; the other jobs' records are in "
                 f"theirs")  # fmt: skip
    if outcomes.not_ok:  # the jobs ran under this process (the basic launcher; others: hydra_callbacks.ShowResults)
        sys.exit(not_ok_line(outcomes.not_ok))
    if outcomes.skipped and not outcomes.ran:
        sys.exit(nothing_ran_line(outcomes.skipped))
