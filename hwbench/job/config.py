"""The config's schema (Hydra structured configs), its range checks, and composing it outside the CLI.

The YAML files under ``conf`` hold the values and their comments; the dataclasses here hold the
types, so that ``epochs=abc`` gets Hydra's own one-line error. What a type cannot say (ranges, choices)
is checked once, in :func:`check`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from hwbench.commands import command
from hwbench.data.mnist_files import MNIST_TRAIN_SIZE
from hwbench.errors import ConfigError, one_of
from hwbench.job.folders import fresh_dir, fresh_subdir
from hwbench.job.keys import unknown_key_line, unknown_keys
from hwbench.launch import slurm

PRECISIONS = ("32", "16-mixed", "bf16-mixed")
MATMUL_PRECISIONS = ("highest", "high", "medium")
MAX_SEED = 2**32 - 1
DEVICE_NAMES = {"cuda": "gpu", "mps": "mps", "cpu": "cpu"}  # accelerator -> the device config's name
MIN_TIMED_STEPS = 4  # optimizer steps an epoch: fewer, and the epoch's clock reads weigh as much as its steps
# what ~measure.NAME can switch off (conf/measure/all.yaml); the clock, the epochs and the test always run
MEASUREMENTS = ("inference", "peak", "canary", "machine_load", "memory", "energy", "gpu_busy")


@dataclass
class ArchConfig:
    name: str = MISSING
    net: Any = MISSING  # the net's constructor and arguments (``_target_``), which differ per network


@dataclass
class DataConfig:
    _target_: str = MISSING
    root: str | None = None
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    val_size: int = MISSING
    train_limit: int | None = None
    seed: int = MISSING
    steps_per_execution: int = MISSING


@dataclass
class CpuKernelsConfig:
    linear: str = MISSING
    conv2d: str = MISSING
    dropout: str = MISSING


@dataclass
class DeviceConfig:
    name: str = MISSING
    accelerator: str = MISSING
    precision: str = MISSING
    threads: int | None = None
    devices: int = 1  # per node
    nodes: int = 1
    strategy: str = "auto"
    matmul_precision: str = MISSING
    cudnn_benchmark: bool = MISSING
    require_quiet: bool = False
    cpu_kernels: CpuKernelsConfig = field(default_factory=CpuKernelsConfig)


@dataclass
class OptimConfig:
    optimizer: Any = MISSING  # a partial torch.optim class; its own checks validate its arguments
    scheduler: Any = None


@dataclass
class HwbenchConfig:
    arch: ArchConfig = field(default_factory=ArchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # the top-level keys; their values and comments are in conf/config.yaml
    epochs: int = MISSING
    batch_size: int = MISSING  # per device
    lr: float = MISSING
    seed: int = MISSING
    repeats: int = 1  # runs of each sweep point (hwbench/hydra_adapters/repeats.py)
    repeat: int = 1  # which of them this job is
    init: str = MISSING  # keras | torch
    one_hot_targets: bool = MISSING

    execution: Any = MISSING  # the execution strategy's constructor and arguments (``_target_``), per strategy
    logger: Any = None  # each chosen logger's constructor and arguments (``_target_``), and what they share
    measure: Any = None  # the measurements switched on, by name (conf/measure), each with its settings
    steps_per_execution: int = MISSING  # optimizer steps per Lightning step
    channels_last: bool = MISSING

    log_every_n_steps: int = MISSING
    warmup_steps: int = MISSING
    inference_batch_size: int = MISSING
    output_root: str = MISSING
    run_name: str = MISSING


def gpu_count() -> int:
    import torch  # only when a launcher preset asks: the CLI parses arguments before torch loads

    return torch.cuda.device_count()


def device_name(accelerator: str) -> str:
    """The name a job's folder, record and summary give its device: cpu, gpu or mps, never auto.

    Resolved where a job resolves its folder, on the machine that runs it (a SLURM node, not the login node)."""
    if accelerator == "auto":
        from hwbench.devices import resolve_accelerator  # torch: loaded once a job names its folder, not before

        accelerator = resolve_accelerator(accelerator)
    return DEVICE_NAMES.get(accelerator, accelerator)


def repeat_suffix(repeat: int, repeats: int) -> str:
    """The end of a sweep job's folder name: '_r2' for its second repeat; nothing where points run once."""
    return f"_r{repeat}" if repeats > 1 else ""


def register() -> None:
    """Make the schema and the folder-claiming resolvers known to Hydra (idempotent)."""
    ConfigStore.instance().store(name="hwbench_schema", node=HwbenchConfig)
    # a launcher preset's GPUs per node: this machine's count (submitit_local hides the GPUs it is not told of)
    OmegaConf.register_new_resolver("hwbench_gpu_count", gpu_count, replace=True)
    # hydra/launcher=slurm: GPUs for a GPU job only, a rank's CPUs from device.threads (hwbench/launch/slurm.py)
    OmegaConf.register_new_resolver("hwbench_slurm_gpus", slurm.gpus_per_node, replace=True)
    OmegaConf.register_new_resolver("hwbench_slurm_cpus", slurm.cpus_per_task, replace=True)
    # cached: resolved once per process and copied into every job's config, so a job keeps its folder
    OmegaConf.register_new_resolver("hwbench_fresh_dir", fresh_dir, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("hwbench_fresh_subdir", fresh_subdir, use_cache=True, replace=True)
    # device=auto's name: the device it resolves to; the --help page's commands, as this shell runs them
    OmegaConf.register_new_resolver("hwbench_device_name", device_name, replace=True)
    OmegaConf.register_new_resolver("hwbench_command", command, replace=True)
    OmegaConf.register_new_resolver("hwbench_repeat", repeat_suffix, replace=True)
    # a store's path that every job of a sweep (each in its own process and folder) reads the same way
    OmegaConf.register_new_resolver("hwbench_abspath", os.path.abspath, replace=True)


def config_dir() -> str:
    """The config groups' folder (conf/ at the top of the checkout; inside the wheel, the package hwbench.conf)."""
    import importlib.resources

    try:
        return str(importlib.resources.files("hwbench.conf"))
    except ModuleNotFoundError:  # a checkout on PYTHONPATH, not installed: its own conf/
        return str(Path(__file__).resolve().parents[2] / "conf")


def compose_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The config as ``python -m hwbench OVERRIDES`` composes it (for scripts and tests)."""
    register()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("config", list(overrides))


def numbers(node: Any, key: str = "") -> Iterator[tuple[str, float]]:
    """Every float in a resolved config, with its dotted key."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from numbers(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from numbers(v, f"{key}[{i}]")
    elif isinstance(node, float):
        yield key, node


def check(cfg: DictConfig) -> None:
    """Catch values that would fail deep inside training or make a run whose figures mean nothing, and say how
    to fix them."""
    from hwbench.devices import available_cores  # torch: not loaded while the CLI parses arguments

    examples = {
        "device.threads": f"{available_cores()} (the cores this process may use)",
        "device.devices": "1",
        "device.nodes": "1",
    }

    def at_least(key: str, minimum: int) -> None:
        value = OmegaConf.select(cfg, key)
        if value is not None and value < minimum:
            example = examples.get(key, max(minimum, 5))
            raise ConfigError(f"{key} must be at least {minimum}, got {value}: set e.g. {key}={example}")

    check_keys(cfg)

    for key in ("epochs", "batch_size", "warmup_steps", "steps_per_execution", "inference_batch_size",
                "log_every_n_steps", "device.threads", "device.devices", "device.nodes", "data.eval_batch_size",
                "data.train_limit", "repeats", "repeat"):  # fmt: skip
        at_least(key, 1)
    if cfg.repeat > cfg.repeats:
        raise ConfigError(f"repeat={cfg.repeat} but repeats={cfg.repeats}: the sweep sets repeat, give repeats only")
    at_least("data.val_size", 0)
    check_numbers(cfg)
    if cfg.data.val_size >= MNIST_TRAIN_SIZE:
        raise ConfigError(f"data.val_size must be below {MNIST_TRAIN_SIZE}, got {cfg.data.val_size}")
    if cfg.data.train_limit is not None and cfg.data.train_limit > MNIST_TRAIN_SIZE - cfg.data.val_size:
        raise ConfigError(f"data.train_limit must be at most {MNIST_TRAIN_SIZE - cfg.data.val_size} (60,000 "
                          f"training images less data.val_size), got {cfg.data.train_limit}")  # fmt: skip
    check_split(cfg)
    check_measures(cfg)
    one_of("device.precision", str(cfg.device.precision), PRECISIONS)
    one_of("device.matmul_precision", cfg.device.matmul_precision, MATMUL_PRECISIONS)
    one_of("init", cfg.init, ("keras", "torch"))
    one_of("device.strategy", cfg.device.strategy, ("auto", "ddp"))
    from hwbench.model.cpu_kernels.autotune import AUTO, KINDS  # torch: not loaded while the CLI parses arguments

    for kind, kernels in KINDS.items():
        one_of(f"device.cpu_kernels.{kind}", cfg.device.cpu_kernels[kind], (AUTO, *kernels))
    if world_size(cfg) > 1 and cfg.device.accelerator not in ("cpu", "cuda", "auto"):
        ranks = ranks_text(cfg)
        raise ConfigError(f"{ranks} needs device=cpu or device=gpu (DDP runs on "
                          f"CPU processes or CUDA GPUs), got device.accelerator={cfg.device.accelerator}")  # fmt: skip


def world_size(cfg: DictConfig) -> int:
    """The job's DDP ranks: device.devices on each of device.nodes machines."""
    return cfg.device.devices * cfg.device.get("nodes", 1)


def ranks_text(cfg: DictConfig) -> str:
    """'device.devices=2', or 'device.nodes=2 x device.devices=1' where the job spans machines."""
    nodes = cfg.device.get("nodes", 1)
    return (f"device.nodes={nodes} x " if nodes > 1 else "") + f"device.devices={cfg.device.devices}"


def check_measures(cfg: DictConfig) -> None:
    chosen = set(cfg.get("measure") or {})
    if unknown := sorted(chosen - set(MEASUREMENTS)):
        raise ConfigError(f"measure.{unknown[0]}: no such measurement; measure has {', '.join(MEASUREMENTS)}")
    if cfg.device.require_quiet and "machine_load" not in chosen:
        raise ConfigError("device.require_quiet=true needs measure.machine_load: drop ~measure.machine_load")


def measured(cfg: DictConfig, name: str) -> bool:
    """Whether the job measures ``name`` (one of MEASUREMENTS)."""
    return name in (cfg.get("measure") or {})


def check_precision(cfg: DictConfig, accelerator: str) -> None:
    """16-mixed is float16 autocast, a GPU's: on a CPU Lightning runs bfloat16 in its place, with a warning, and
    the record (and the matmul peak probed for it) would name a precision that never ran."""
    if accelerator == "cpu" and str(cfg.device.precision) == "16-mixed":
        raise ConfigError("device.precision=16-mixed (float16) runs on a GPU only: on a CPU set "
                          "device.precision=bf16-mixed (or 32)")  # fmt: skip


def check_keys(cfg: DictConfig) -> None:
    """A key added on the command line (``+foo=1``) that nothing reads: refused, as a mistyped key is."""
    unknown = next(unknown_keys(OmegaConf.to_container(cfg, resolve=False), HwbenchConfig), None)  # type: ignore[arg-type]
    if unknown is not None:
        raise ConfigError(unknown_key_line(*unknown))


def check_split(cfg: DictConfig) -> None:
    """The training split against the batch: a batch larger than the split would be recorded as run though a
    smaller one ran, and a split of a few steps an epoch times the epoch's edges (a sync, a barrier), not them."""
    if cfg.data.batch_size != cfg.batch_size:  # the record's batch is batch_size: it must be the one that runs
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} differs from batch_size={cfg.batch_size}: set "
                          f"batch_size={cfg.data.batch_size} instead (data.batch_size follows it)")  # fmt: skip
    ranks, limit = world_size(cfg), cfg.data.train_limit
    images = limit or MNIST_TRAIN_SIZE - cfg.data.val_size
    split = f"data.train_limit={limit}" if limit else f"60,000 less data.val_size={cfg.data.val_size}"
    batch = cfg.batch_size * ranks
    what = f"batch_size={cfg.batch_size}" + (f" x {ranks_text(cfg)}" if ranks > 1 else "")
    largest = images // (ranks * MIN_TIMED_STEPS)
    more = "train on more images (data.train_limit, data.val_size)"
    fix = f"set batch_size to at most {largest}, or {more}" if largest else more
    if batch > images:
        raise ConfigError(f"{what} is a batch of {batch:,} images, more than the {images:,} training images "
                          f"({split}): {fix}")  # fmt: skip
    steps = math.ceil(images / batch) if ranks == 1 else images // batch  # hwbench.data.TensorBatches.steps
    if steps < MIN_TIMED_STEPS:
        raise ConfigError(f"{images:,} training images ({split}) make {steps} step(s) an epoch at {what}: too few "
                          f"to time (at least {MIN_TIMED_STEPS}): {fix}")  # fmt: skip


def check_numbers(cfg: DictConfig) -> None:
    """What a type lets through: NaN and infinity anywhere, lr's sign, the seeds' and dropout's ranges."""
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):  # nan passes a plain `lr <= 0` test
        raise ConfigError(f"lr must be a positive, finite number, got {cfg.lr!r}: set e.g. lr=0.01")
    for key, value in numbers(OmegaConf.to_container(cfg, resolve=True)):
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}: give it a finite value "
                              f"({command('hwbench')} --cfg job shows the config)")  # fmt: skip
    for key in ("seed", "data.seed"):
        seed = OmegaConf.select(cfg, key)
        if not 0 <= seed <= MAX_SEED:  # numpy's range, which Lightning's seed_everything enforces deep inside
            raise ConfigError(f"{key} must be between 0 and {MAX_SEED}, got {seed}: set e.g. {key}=0")
    dropout = OmegaConf.select(cfg, "arch.net.dropout")
    for p in dropout if OmegaConf.is_list(dropout) else [dropout]:
        if isinstance(p, (int, float)) and not 0 <= p <= 1:  # else torch's message hides under Hydra's instantiate
            raise ConfigError(f"arch.net.dropout must be between 0 and 1, got {dropout}: set e.g. arch.net.dropout=0.5")
