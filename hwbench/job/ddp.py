"""Lightning's DDP inside Hydra jobs: how ranks >= 1 are started, and what a DDP job must undo when it ends.

Lightning's subprocess launcher starts ranks 1..N-1 by re-running ``sys.argv`` plus ``hydra.run.dir=...``.
In a multirun that argv still holds ``-m a=1,2`` (every child re-launches the whole sweep), under submitit
it is ``python -m submitit.core._submit`` (the child re-runs the pickle), and ``run.dir`` is not the job's
folder. :func:`hydra_job_command` builds the child's command from this job's own resolved overrides, in
RUN mode, pinned to this job's folder; the children write nothing there but their log.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")  # Lightning's order (_get_rank)
# of a run's own Hydra overrides, those that shape a job's output (its logging) go on to the processes it starts
FORWARDED_HYDRA = ("hydra.job_logging", "hydra/job_logging", "hydra.hydra_logging", "hydra/hydra_logging",
                   "hydra.verbose", "hydra.job.name")  # fmt: skip


def process_rank() -> int:
    """This process's global rank as its launcher set it (0 when nothing did), before Lightning starts."""
    return next((int(os.environ[v]) for v in RANK_VARIABLES if os.environ.get(v, "").isdigit()), 0)


def hwbench_command(*pins: str) -> tuple[list[str], str]:
    """``python -m hwbench`` as this Hydra job: its config and its own overrides (a sweep's value already picked),
    its logging's Hydra overrides, then ``pins``; and the folder the run was started in. How ranks >= 1 and the
    job process (hwbench.job.process) are started."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    hc = HydraConfig.get()
    cmd = [sys.executable, "-m", "hwbench", f"--config-name={hc.job.config_name}"]
    # a --config-dir is not an override: forward it from HydraConfig (sys.argv is not ours under submitit)
    cmd += [f"--config-dir={s.path}" for s in hc.runtime.config_sources if s.provider == "command-line"]
    cmd += list(hc.overrides.task)  # this job's overrides only: the sweep's value already picked
    cmd += [o for o in hc.overrides.hydra if o.lstrip("+~").startswith(FORWARDED_HYDRA)]
    return [*cmd, *pins], get_original_cwd()


def hydra_job_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command and folder Lightning starts rank ``local_rank`` with (replaces ``_hydra_subprocess_cmd``)."""
    from hydra.core.hydra_config import HydraConfig

    return hwbench_command(
        f'hydra.run.dir="{HydraConfig.get().runtime.output_dir}"',  # the job's own folder, claimed by rank 0
        f"hydra.job.name=ddp_rank{local_rank}",  # its log: <job folder>/ddp_rank1.log
        "hydra.output_subdir=null",  # rank 0 already wrote .hydra/
        "hydra.mode=RUN",  # never a sweep in a child
    )


def install_hydra_job_command() -> None:
    """Point Lightning's launcher at :func:`hydra_job_command` (it imported the original by name)."""
    import lightning.pytorch.strategies.launchers.subprocess_script as launcher

    if not hasattr(launcher, "_hydra_subprocess_cmd"):
        raise RuntimeError("Lightning no longer has _hydra_subprocess_cmd: re-check hwbench/job/ddp.py against it")
    launcher._hydra_subprocess_cmd = hydra_job_command


@contextlib.contextmanager
def job_scope(distributed: bool) -> Iterator[None]:
    """Around a DDP job run in its caller's process (each job has a process of its own under python -m hwbench,
    but not where runner.run is called directly, or no process could be started): leave it as it was.

    Lightning writes MASTER_ADDR/PORT, LOCAL_RANK, WORLD_SIZE, OMP_NUM_THREADS into ``os.environ``, sets
    torch's threads, and keeps the process group: the next job would think its ranks were made externally.
    """
    if not distributed:
        yield
        return
    import torch

    install_hydra_job_command()
    env, threads = dict(os.environ), torch.get_num_threads()
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(env)
        torch.set_num_threads(threads)
