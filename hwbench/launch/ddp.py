"""Lightning's DDP inside Hydra jobs: how ranks >= 1 are started, and what a DDP job must undo when it ends.

On one machine the job's process (rank 0) starts ranks 1..D-1 itself, with the environment Lightning's own launcher
gives them (MASTER_ADDR/PORT, NODE_RANK, WORLD_SIZE, each its LOCAL_RANK): Lightning's public
``LightningEnvironment`` then takes them as started externally and starts none. Lightning's launcher would re-run
``sys.argv``, which in a multirun still holds ``-m a=1,2`` (every child re-launches the whole sweep) and under
submitit is ``python -m submitit.core._submit``; :func:`hydra_job_command` builds a rank's command from this job's
own resolved overrides, in RUN mode, pinned to this job's folder (the ranks write nothing there but their log).
Starting them here also lets hwbench watch them (:class:`RankWatch`) and pass each stop signal on to them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from hwbench.errors import ConfigError
from hwbench.launch.signals import stop_signals_blocked

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")  # Lightning's order
POLL_SECONDS = 1.0  # how often the ranks this process started are looked at (a job that hangs is the hurry)
# a rank died and this one has not finished its job this long after: it hangs in a collective that will never
# complete (NCCL waits for a dead peer), and everything is killed, as Lightning's own observer does at once
HUNG_SECONDS = 60.0
# the job has ended (its record written): how long its ranks get to end by themselves
RANK_EXIT_SECONDS = 5.0
# of a run's own Hydra overrides, those that shape a job's output (its logging) go on to the processes it starts
FORWARDED_HYDRA = ("hydra.job_logging", "hydra/job_logging", "hydra.hydra_logging", "hydra/hydra_logging",
                   "hydra.verbose", "hydra.job.name")  # fmt: skip


def process_rank() -> int:
    """This process's global rank as its launcher set it (0 when nothing did), before Lightning starts."""
    return next((int(os.environ[v]) for v in RANK_VARIABLES if os.environ.get(v, "").isdigit()), 0)


def hwbench_command(*pins: str) -> tuple[list[str], str]:
    """``python -m hwbench`` as this Hydra job: its config and its own overrides (a sweep's value already picked),
    its logging's Hydra overrides, then ``pins``; and the folder the run was started in. How ranks >= 1 and the
    job process (hwbench.launch.process) are started."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    hc = HydraConfig.get()
    cmd = [sys.executable, "-m", "hwbench", f"--config-name={hc.job.config_name}"]
    # a --config-dir is not an override: forward it from HydraConfig (sys.argv is not ours under submitit)
    cmd += [f"--config-dir={s.path}" for s in hc.runtime.config_sources if s.provider == "command-line"]
    cmd += list(hc.overrides.task)  # this job's overrides only: the sweep's value already picked
    cmd += [o for o in hc.overrides.hydra if o.lstrip("+~").startswith(FORWARDED_HYDRA)]
    return [*cmd, *pins], get_original_cwd()


def run_dir_pin(folder: object) -> str:
    """``hydra.run.dir`` pinned to ``folder``, quoted for Hydra's override grammar: a folder name may hold a quote,
    a backslash or ``${`` (from run_name), each read back as itself (Hydra has no public quoting function)."""
    special = {'"': '\\"', "${": "\\${", "": ""}  # a quote, an interpolation's start, the closing quote
    escaped = re.sub(r'(\\*)("|\$\{|$)', lambda m: m.group(1) * 2 + special[m.group(2)], str(folder))
    return f'hydra.run.dir="{escaped}"'


def hydra_job_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command and folder rank ``local_rank`` of this node starts with: this job, in its folder."""
    from hydra.core.hydra_config import HydraConfig

    return hwbench_command(
        run_dir_pin(HydraConfig.get().runtime.output_dir),  # the job's own folder, claimed by rank 0
        f"hydra.job.name=ddp_rank{local_rank}",  # its log: <job folder>/ddp_rank1.log
        "hydra.output_subdir=null",  # rank 0 already wrote .hydra/
        "hydra.mode=RUN",  # never a sweep in a child
    )


class RankDeath(NamedTuple):
    rank: int
    how: str  # 'was killed by SIGKILL', 'exited with status 1'
    log: str | None  # its log file

    def line(self, epochs: int) -> str:
        """The job's reason: 'rank 1 was killed by SIGKILL after 1 epoch(s) (its log: <job>/ddp_rank1.log)'."""
        return f"rank {self.rank} {self.how} after {epochs} epoch(s)" + (f" (its log: {self.log})" if self.log else "")


def started_elsewhere() -> bool:
    """Whether this job's ranks were started by whoever started this process (torchrun, srun, LSF, MPI, or a hand
    that set LOCAL_RANK): Lightning's own test, its cluster environments' public ``detect`` in the order its
    Trainer tries them, then ``LightningEnvironment.creates_processes_externally``. Else this process starts them."""
    from lightning.fabric.plugins.environments import (
        LightningEnvironment,
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    detected = (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment)
    return any(env.detect() for env in detected) or LightningEnvironment().creates_processes_externally


class RankWatch:
    """The ranks this process started, watched in place of Lightning's observer, which SIGKILLs this process too
    within 5 s of a rank's death: before the job could record what it finished. This one notes the first rank that
    died and how, for the job's one line, and kills only a job that hangs."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.first: RankDeath | None = None
        self.done = threading.Event()  # the job has ended

    def launch(self, per_node: int, nodes: int) -> None:
        """Start this node's ranks 1..per_node-1 as Lightning's launcher would (its ``_call_children_scripts``:
        the same variables, read from the public ``LightningEnvironment``), this process being local rank 0: with
        LOCAL_RANK set, Lightning takes them as started externally. Each is :func:`hydra_job_command`'s."""
        from hydra.core.hydra_config import HydraConfig
        from lightning.fabric.plugins.environments import LightningEnvironment

        if not HydraConfig.initialized():  # hwbench.job.runner.run called directly: no command to start them with
            raise ConfigError(f"device.devices={per_node} starts its other ranks as python -m hwbench jobs: run it "
                              f"with python -m hwbench")  # fmt: skip
        cluster = LightningEnvironment()
        os.environ.update(MASTER_ADDR=cluster.main_address, MASTER_PORT=str(cluster.main_port), LOCAL_RANK="0",
                          NODE_RANK=str(cluster.node_rank()), WORLD_SIZE=str(per_node * nodes))  # fmt: skip
        try:
            for local_rank in range(1, per_node):
                command, cwd = hydra_job_command(local_rank)
                env = {**os.environ, "LOCAL_RANK": str(local_rank)}
                self.procs.append(subprocess.Popen(command, cwd=cwd, env=env))
        finally:
            self.start(self.procs)

    def start(self, procs: list[subprocess.Popen]) -> None:
        """Watch ``procs``, this node's ranks 1..D-1, once they are started."""
        self.procs = procs
        threading.Thread(target=self.watch, name="hwbench-rank-watch", daemon=True).start()

    def send_signal(self, signum: int) -> None:
        """A stop signal this process took, passed on to every rank it started (Lightning's launcher passes SIGTERM
        on to its children; here every stop signal)."""
        for proc in self.procs:
            with contextlib.suppress(OSError):  # never in the way of this process's own stop
                proc.send_signal(signum)  # skips those that have exited

    def reap(self, grace: float, kill: bool) -> None:
        """Once the job has ended: its ranks end by themselves within ``grace`` seconds (they end their job too).
        One still waiting in a collective on this process waits until this process has exited (its connections
        are held open by the job's objects until then): ``kill``, where this process goes on (the caller's)."""
        deadline = time.monotonic() + grace
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            if kill and proc.poll() is None:
                proc.kill()
                proc.wait()

    def watch(self) -> None:
        while not self.done.wait(POLL_SECONDS):
            if self.death() is not None:
                break
        if not self.done.wait(HUNG_SECONDS):
            for proc in self.procs:
                proc.send_signal(signal.SIGKILL)  # skips those that have exited
            os.kill(os.getpid(), signal.SIGKILL)

    def death(self, wait: float = 0.0) -> RankDeath | None:
        """The first rank that ended with an error, and how; ``wait``: give a dying rank that long to be gone
        (this rank may see its connection drop a moment before the process has exited)."""
        deadline = time.monotonic() + wait
        while self.first is None and self.procs:
            for local_rank, proc in enumerate(self.procs, start=1):
                if proc.poll():  # not None, not 0
                    self.first = self.first or rank_ended(local_rank, len(self.procs) + 1, proc)
            if self.first is not None or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        return self.first


def rank_ended(local_rank: int, per_node: int, proc: subprocess.Popen) -> RankDeath:
    """How a rank ended, from its exit status, and its log file, from its command (hydra_job_command's)."""
    code = proc.returncode
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        how = f"was killed by {name}"
    else:
        how = f"exited with status {code}"
    args = dict(str(a).partition("=")[::2] for a in proc.args if "=" in str(a))  # type: ignore[union-attr]
    folder, name = args.get("hydra.run.dir", "").strip('"'), args.get("hydra.job.name")
    rank = int(os.environ.get("NODE_RANK", "0") or 0) * per_node + local_rank
    return RankDeath(rank, how, str(Path(folder) / f"{name}.log") if folder and name else None)


def console_to_log(log_file: Path) -> None:
    """A rank >= 1 prints nothing on the console (rank 0 speaks for the job): its log lines go to its log file
    alone, and whatever else it writes (a warning, a traceback) is appended there too."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError:  # a folder gone read-only: rank 0 reports the folder; this rank's stray output stays visible
        return
    os.dup2(fd, sys.stdout.fileno())
    os.dup2(fd, sys.stderr.fileno())
    os.close(fd)


@contextlib.contextmanager
def job_scope(distributed: bool, own_process: bool) -> Iterator[RankWatch | None]:
    """Around a DDP job: the ranks this process is to start, watched (the job's failure names the one that died;
    None where they were started elsewhere); and the process left as it was, for a job run in its caller's process
    (each job has a process of its own under python -m hwbench, but not where runner.run is called directly, or no
    process could be started; ``own_process``: it has one, which ends with the job).

    Starting the ranks (and Lightning) writes MASTER_ADDR/PORT, LOCAL_RANK, WORLD_SIZE, OMP_NUM_THREADS into
    ``os.environ``, sets torch's threads, and keeps the process group: the next job would think its ranks were
    made externally. A stop signal during the clean-up is raised once it is done.
    """
    if not distributed:
        yield None
        return
    import torch

    ranks = None if started_elsewhere() else RankWatch()
    env, threads = dict(os.environ), torch.get_num_threads()
    try:
        yield ranks
    finally:
        with stop_signals_blocked():
            if ranks is not None:
                ranks.done.set()
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()  # a rank still in a collective with this one gets an error
            if ranks is not None:
                ranks.reap(RANK_EXIT_SECONDS, kill=not own_process)
            os.environ.clear()
            os.environ.update(env)
            torch.set_num_threads(threads)
