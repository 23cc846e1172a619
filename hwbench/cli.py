"""``python -m hwbench``: Hydra runs one job or a sweep of them; each ends with one line."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from hwbench.errors import HwbenchError, Interrupted, OutputUnwritable
from hwbench.job.config import config_dir, register
from hwbench.job.ddp import process_rank
from hwbench.job.hydra_errors import errors_as_one_line
from hwbench.job.signals import signals_raise_interrupted
from hwbench.record.writing import exit_unwritable

SUMMARY_LOG = "hwbench.summary"  # the job's closing line, into its log file (conf/hydra/job_logging/hwbench.yaml)


@dataclass
class Outcomes:
    """What the jobs of this process ended as: a sweep goes on past a bad job, and its exit status says so."""

    not_ok: list[str] = field(default_factory=list)

    def job(self, cfg: DictConfig) -> None:
        from hwbench.job.console.quiet import quiet_lightning
        from hwbench.job.runner import run  # torch and Lightning load after Hydra has parsed the arguments

        quiet_lightning()  # importing Lightning gave it a console handler again
        hydra_cfg = HydraConfig.get()
        sweeping = hydra_cfg.mode == RunMode.MULTIRUN
        folder = Path(hydra_cfg.runtime.output_dir)
        try:
            record = run(cfg, folder)
        except OutputUnwritable as err:  # a full disk: every later job would meet it too
            exit_unwritable(err, sweeping)
        except HwbenchError as err:  # the folder is taken: nothing was run or written
            line, status = f"{cfg.run_name}: {err}", "failed"
        else:
            if process_rank() > 0:  # a DDP rank >= 1: rank 0 speaks for the job
                return
            line, status = record.summary(), record.status
        logging.getLogger(SUMMARY_LOG).info(line)
        if status == "ok" or (sweeping and status == "skipped"):
            print(line, flush=True)
        elif sweeping:
            print(line, file=sys.stderr, flush=True)
            self.not_ok.append(f"{folder.name} ({status})")  # the folder: jobs of a sweep may share a name
        else:
            sys.exit(f"error: {line}")


def main() -> None:
    from hwbench.job.console.quiet import extras

    register()
    extras()
    outcomes = Outcomes()
    app = hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")(outcomes.job)
    try:
        with signals_raise_interrupted(), errors_as_one_line():
            app()
    except Interrupted as err:  # the interrupted job has recorded what it finished; no further job starts
        print(f"error: {err}: the finished epochs are in the job's results.json", file=sys.stderr, flush=True)
        sys.exit(128 + err.signum)
    if outcomes.not_ok:
        sys.exit(f"error: {len(outcomes.not_ok)} job(s) did not finish ok: {', '.join(outcomes.not_ok)} "
                 f"(see their results.json)")  # fmt: skip
