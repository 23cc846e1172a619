"""A job under torchrun (or any launcher of PyTorch's elastic agent: Kubernetes' PyTorchJob, cloud batch): every
rank is a process torchrun started and watches, so the job runs in it, never in a process of hwbench's own; rank 0
writes the record and the logs, and each other rank only its log, ``ddp_rank<N>.log`` in the same folder."""

from __future__ import annotations

import os

from hydra.types import RunMode
from omegaconf import DictConfig

from hwbench.errors import ConfigError

RUNS_HERE = "run in the process torchrun started (it starts and watches every rank)"


def started_here() -> bool:
    """Started by torchrun's elastic agent: what torch.distributed.is_torchelastic_launched checks, and Lightning's
    TorchElasticEnvironment with it (read here without importing torch: the sweep's process has not loaded it)."""
    return os.environ.get("TORCHELASTIC_RUN_ID") is not None


def rank_log_name() -> str | None:
    """The log file's name (less .log) of a rank >= 1 under torchrun: ddp_rank<global rank>; None elsewhere."""
    rank = os.environ.get("RANK", "")
    return f"ddp_rank{rank}" if rank.isdigit() and int(rank) > 0 and started_here() else None


def refuse_mismatch(cfg: DictConfig, world: int) -> None:
    """torchrun's ranks against the config's: Lightning would refuse them deep inside the Trainer."""
    if not started_here():
        return
    nodes, devices = cfg.device.nodes, cfg.device.devices
    started, per_node = int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_WORLD_SIZE", devices))
    if started != world or per_node != devices:
        raise ConfigError(f"torchrun started {started} rank(s), {per_node} a node, but device.nodes={nodes} x "
                          f"device.devices={devices} is {world}: run torchrun --nnodes={nodes} --nproc-per-node="
                          f"{devices}, or set device.nodes and device.devices to match it")  # fmt: skip


def unpinned_folder(config: DictConfig) -> str | None:
    """Why a run under torchrun cannot start as given (None: it can): its ranks must share one folder, and each
    node's hwbench would otherwise make a folder of its own (named by the time it started); a sweep would run on
    every rank."""
    if not started_here() or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return None
    if config.hydra.mode == RunMode.MULTIRUN:
        return "torchrun runs one job across its ranks: drop -m (a sweep would run on every rank)"
    if not any(o.startswith("hydra.run.dir=") for o in config.hydra.overrides.hydra):
        return (
            "under torchrun every rank writes to one folder: pass the same hydra.run.dir=FOLDER on every node "
            "(on a filesystem they share)"
        )
    return None
