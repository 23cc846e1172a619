"""Every job in a fresh Python process: a figure measures the hardware, not what ran before it in the process.

Hydra's basic launcher runs a sweep's jobs one after another in its own process, where a job inherits the last
one's heap layout, CUDA context, caching allocator and compiler caches, and a job that dies ends the sweep.
No launcher runs jobs one at a time each in a new process (submitit_local starts them all at once; joblib reuses
its workers), so the job function starts each job in a process of its own (``python -m hwbench`` in RUN mode
pinned to the job's folder: forked from a template that has only imported the libraries (launch/template.py),
else a new interpreter; never this process's memory), waits for it and takes its outcome from a pipe. Under
submitit and SLURM it holds all the same. DDP's ranks >= 1 (hwbench.launch.ddp) and the job process run their job
where they are.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NamedTuple

from omegaconf import DictConfig

from hwbench.errors import Interrupted
from hwbench.launch import torchrun
from hwbench.launch.ddp import hwbench_command, process_rank, run_dir_pin
from hwbench.launch.signals import stop_signals_blocked
from hwbench.launch.template import exec_reason, inherited, start_from_template, start_resource_tracker
from hwbench.record.machine import JobProcess
from hwbench.record.results import RECORD_NAME, ResultsRecord, Status, now, read_record, write_record

ENV = "HWBENCH_JOB_PROCESS"  # in a job process: "<outcome pipe's fd>:<time.monotonic() when asked for>:<how>"
CALLER_PROCESS = "run in its caller's process (hwbench.job.runner.run called directly, not by python -m hwbench)"


class Outcome(NamedTuple):
    """What a job ended as: its closing line and its record's status ("unwritable": its disk is full)."""

    line: str
    status: str
    died: str | None = None  # how its process died, where it did
    signum: int | None = None  # the stop signal that interrupted it


class Started(NamedTuple):
    fd: int  # the outcome pipe's
    at: float  # time.monotonic() when its start was asked for
    by: str  # template | exec
    reason: str | None  # why exec


def job_process() -> Started | None:
    """In a job process: its outcome pipe and how and when its parent started it; None elsewhere (DDP ranks >= 1
    inherit the variable, not the pipe)."""
    fd, _, rest = os.environ.get(ENV, "").partition(":")
    if process_rank() > 0 or not fd.isdigit():
        return None
    at, _, by = rest.partition(":")
    reason = None if by == "template" else exec_reason()
    return Started(int(fd), float(at), by or "exec", reason)


def shared_reason() -> str | None:
    """Why a job cannot have a fresh process here (None: it can)."""
    if not sys.executable:
        return "no Python interpreter to start (sys.executable is empty): the job ran in the sweep's process"
    if os.name != "posix":  # the outcome pipe is passed by its fd (pass_fds): POSIX only
        return f"no job process on {sys.platform} (POSIX only): the job ran in the sweep's process"
    if torchrun.started_here():  # under torchrun, run in this process: torchrun started it and watches it
        return torchrun.RUNS_HERE
    return None


def process_part(shared: str | None = None) -> JobProcess:
    """The record's part for a job starting now in this process; ``shared``: why it runs in its caller's."""
    started = job_process()
    if started is None:
        return JobProcess(pid=os.getpid(), shared=shared or CALLER_PROCESS)
    return JobProcess(pid=os.getpid(), start_seconds=max(0.0, time.monotonic() - started.at),
                      started_by=started.by, exec_reason=started.reason,
                      inherited=inherited() if started.by == "template" else [])  # fmt: skip


def report(outcome: Outcome) -> None:
    """In a job process: the outcome, to the process that started it (small: one write, never blocks)."""
    started = job_process()
    if started is not None:
        with contextlib.suppress(OSError):
            os.write(started.fd, json.dumps(outcome._asdict()).encode())


def run_in_job_process(cfg: DictConfig, folder: Path) -> Outcome:
    """Run this Hydra job in a fresh process and return its outcome; where the process died, its record says
    how. A stop signal goes on to the job process and is raised here once that has recorded what it finished."""
    command, cwd = hwbench_command(run_dir_pin(folder), "hydra.output_subdir=null", "hydra.mode=RUN")
    read, write = multiprocessing.Pipe(duplex=False)
    child: JobHandle | None = None
    if exec_reason() is None:
        start_resource_tracker()  # before the block: starting it unblocks SIGTERM (its docstring says why it matters)
    try:
        with stop_signals_blocked():  # the job process takes them once it can record; here, at the block's end
            child = start_job(command, cwd, write)
        code = child.wait()
        outcome = parsed(drained(read.fileno()))
    except OSError as err:  # out of processes or memory: this job fails, the next may start
        if child is not None:
            raise
        return Outcome(f"{cfg.run_name}: cannot start the job's process ({err.strerror or err}): free some memory "
                       f"or processes and run it again", "failed")  # fmt: skip
    except Interrupted as err:  # sent on (one sent to the process group reaches it twice: it takes the first)
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, err.signum)
            child.wait()  # this process ignores stop signals now: the job records what it finished, then exits
            settle(cfg, folder, child.pid, how_it_died(child.wait()), "interrupted", err.signal_name)
        raise
    finally:
        read.close()
        write.close()
    if outcome is not None and outcome.signum is not None:  # the job process alone was signalled: stop here too
        raise Interrupted(outcome.signum)
    if outcome is not None:
        return outcome
    how = how_it_died(code)
    record = settle(cfg, folder, child.pid, how, "failed", f"its process died ({how})")
    return Outcome(record.summary(), record.status, died=how)


class JobHandle(NamedTuple):
    pid: int
    wait: Callable[[], int]  # its exit status, once it has ended (-N: killed by signal N)


def start_job(command: list[str], cwd: str, write: Connection) -> JobHandle:
    """Start the job's process: forked from the template, else a new interpreter (and why, in its record)."""
    asked = time.monotonic()
    if exec_reason() is None:
        env = {**os.environ, ENV: f"{write.fileno()}:{asked}:template"}
        job = start_from_template(command[3:], cwd, env, write, ENV)  # after "python -m hwbench"
        return JobHandle(job.pid, lambda: wait_for(job))
    env = {**os.environ, ENV: f"{write.fileno()}:{asked}:exec"}
    proc = subprocess.Popen(command, cwd=cwd, env=env, pass_fds=(write.fileno(),))
    return JobHandle(proc.pid, proc.wait)


def wait_for(job: multiprocessing.process.BaseProcess) -> int:
    job.join()
    return job.exitcode if job.exitcode is not None else -signal.SIGKILL


def not_ok_line(not_ok: list[str]) -> str:
    """A sweep's closing line where some jobs did not end ok, each named by its folder and how it ended."""
    return f"error: {len(not_ok)} job(s) did not finish ok: {', '.join(not_ok)} (see their results.json)"


def not_ok_in(sweep: Path) -> list[str]:
    """The jobs of a sweep folder that did not end ok (skipped is ok in a sweep), as ``not_ok_line`` names them,
    from their records: what a launcher that ran them in other processes (submitit, SLURM) leaves to go by."""
    not_ok = []
    for folder in sorted((f for f in sweep.iterdir() if f.is_dir() and not f.name.startswith(".")), key=job_number):
        path = folder / RECORD_NAME
        try:
            record = read_record(path)
        except ValueError:  # none (its process died before it wrote one), or damaged
            not_ok.append(f"{folder.name} (no results.json)" if not path.exists() else f"{folder.name} (unreadable)")
            continue
        if record.status == "running":  # its launcher's process died with it: nothing settled it
            not_ok.append(f"{folder.name} (never finished: its results.json says running)")
        elif record.status not in ("ok", "skipped"):
            not_ok.append(f"{folder.name} ({record.job.died if record.job and record.job.died else record.status})")
    return not_ok


def job_number(folder: Path) -> tuple[int, str]:
    """A job folder's sort key: its job number first (10_x after 9_x), as the sweep ran them."""
    number, _, _ = folder.name.partition("_")
    return (int(number) if number.isdigit() else -1, folder.name)


def settle(cfg: DictConfig, folder: Path, pid: int, how: str, status: Status, what: str) -> ResultsRecord:
    """The record of a job whose process ended without finishing it, as that process left it (its finished
    epochs: it writes them after each), now ``status`` and saying ``what`` happened; made here where it wrote
    none (stopped while starting). A record it finished stays as it is."""
    path = folder / RECORD_NAME
    try:
        record = read_record(path) if path.exists() else None
    except ValueError:  # never half-written (written by rename): a hand's work; replaced
        record = None
    if record is not None and record.status != "running":
        return record
    record = record or ResultsRecord.start(cfg)
    epochs = len(record.training.epochs) if record.training else 0
    record.status, record.finished = status, now()
    record.reason = f"{what} after {epochs} finished epoch(s)"
    record.job = (record.job or JobProcess(pid=pid)).model_copy(update={"died": how})
    write_record(folder, record)
    return record


def drained(fd: int) -> bytes:
    """What the pipe holds, without waiting for its end: a process the job left behind may still hold it."""
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    return b"".join(chunks)


def parsed(message: bytes) -> Outcome | None:
    try:
        fields = json.loads(message)
        return Outcome(str(fields["line"]), str(fields["status"]), signum=fields.get("signum"))
    except (ValueError, KeyError, TypeError):  # nothing (it died), or cut short
        return None


def how_it_died(code: int) -> str:
    """'killed by SIGSEGV', 'exit 139': as a process's exit status says."""
    if code >= 0:
        return f"exit {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"
