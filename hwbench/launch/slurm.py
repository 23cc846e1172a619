"""A job under SLURM (hydra/launcher=slurm: submitit's sbatch and srun): what the launcher asks SLURM for, the tasks
SLURM gave checked against the ranks the job trains on, and Lightning's SLURM environment without its requeue.

Under srun each task is a DDP rank (Lightning's SLURMEnvironment reads SLURM_PROCID, SLURM_NTASKS, the node list);
task 0 runs its job in a fresh process (hwbench.launch.process), the others in submitit's own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from omegaconf import DictConfig

from hwbench.errors import ConfigError
from hwbench.launch.signals import signals_raise_interrupted


def gpus_per_node(accelerator: str, devices: int) -> int | None:
    """The launcher's GPUs a node: one per rank for a GPU job, none asked for otherwise (a CPU job asking for
    GPUs waits for GPU nodes, or is refused where there are none). device=auto asks none: the login node that
    submits cannot tell what the compute nodes have; device=gpu asks."""
    return devices if accelerator == "cuda" else None


def cpus_per_task(threads: int | None) -> int | None:
    """The launcher's CPUs a rank: device.threads where it is set, else the cluster's default."""
    return threads


def under_slurm() -> bool:
    """A task that srun started (Lightning's SLURMEnvironment detects the same; an interactive salloc is not)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def environment() -> list:
    """Lightning's SLURM environment for the Trainer under srun, without its auto-requeue (which would take
    SLURM's pre-timeout signal to requeue the job: hwbench records what the job finished instead); else none."""
    if not under_slurm():
        return []
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)]


def rank_log_name() -> str | None:
    """The log file's name (less .log) of a task >= 1 under srun: ddp_rank<global rank>, as hwbench's own launcher
    names the ranks it starts (Hydra opened the job's log by the job's name, the same in every task); else None."""
    rank = os.environ.get("SLURM_PROCID", "")
    return f"ddp_rank{rank}" if rank.isdigit() and int(rank) > 0 and under_slurm() else None


def under_submitit() -> bool:
    """A job that submitit started (SLURM or submitit_local): one job to a process, which ends with it."""
    return "SUBMITIT_EXECUTOR" in os.environ


def refuse_mismatch(cfg: DictConfig, world: int) -> None:
    """SLURM's tasks against the config's ranks: Lightning would take fewer tasks than ranks as a smaller job, or
    wait for ranks that never come."""
    if not under_slurm():
        return
    nodes, devices = cfg.device.nodes, cfg.device.devices
    tasks, got_nodes = os.environ.get("SLURM_NTASKS", "1"), os.environ.get("SLURM_NNODES", "1")
    per_node = os.environ.get("SLURM_NTASKS_PER_NODE", "")
    if tasks != str(world) or got_nodes != str(nodes) or per_node.partition("(")[0] not in ("", str(devices)):
        raise ConfigError(f"SLURM gave this job {tasks} task(s) on {got_nodes} node(s) but device.nodes={nodes} x "
                          f"device.devices={devices} trains on {world} rank(s): submit it with --nodes={nodes} "
                          f"--ntasks-per-node={devices} (hydra/launcher=slurm asks that; set hydra.launcher.nodes and "
                          f"hydra.launcher.tasks_per_node only to match)")  # fmt: skip


@contextlib.contextmanager
def stops_to_the_job() -> Iterator[None]:
    """While task 0 runs its job: a stop signal (scancel, the time limit, submitit's warning) raises Interrupted, and
    hwbench.launch.process passes it on to the job's process, even one still starting; submitit's handlers would not."""
    if not under_submitit():
        yield
        return
    with signals_raise_interrupted():
        yield
