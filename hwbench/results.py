"""The results record: one typed, versioned JSON file per job, validated on every write and every read."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hwbench.errors import OutputFolderTaken

RECORD_NAME = "results.json"
SCHEMA_VERSION = 2  # 1: the unversioned records of hwbench 0.1, which still read
HOST_BOUND_BELOW = 50.0  # GPU busy %
Status = Literal["running", "ok", "skipped", "failed", "interrupted", "diverged"]

Rate = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # a speed is a finite, non-negative number
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Accuracy = Annotated[float, Field(ge=0, le=1)]
Loss = float  # NaN and inf allowed: that is what a diverged run's loss is


class Model(BaseModel):
    # extra fields are kept (a newer hwbench may add some); NaN is written as "NaN", which json reads back
    model_config = ConfigDict(extra="allow", ser_json_inf_nan="strings")


class Gpu(Model):
    """One of the machine's GPUs, as torch reports it."""

    name: str
    memory_gb: float | None = None
    capability: str | None = None


class Rates(Model):
    """Throughput over a window of training steps (Lightning's ``Throughput``); MFU where the peak is known."""

    samples_per_sec: Rate
    batches_per_sec: Rate
    flops_per_sec: Rate | None = None
    mfu: Rate | None = None


class Epoch(Model):
    """One finished epoch: its seconds, the training seconds so far (validation excluded), losses, accuracies."""

    epoch: int
    seconds: Seconds
    train_seconds: Seconds
    samples_per_sec: Rate | None = None
    samples: int | None = None  # training images of the epoch, all ranks together
    train_loss: Loss | None = None
    train_acc: Accuracy | None = None
    val_loss: Loss | None = None
    val_acc: Accuracy | None = None


class Fingerprint(Model):
    """The machine that ran (hwbench/fingerprint.py): host, CPU, GPUs, software versions.

    The fields compare reads are required; the others are kept as written."""

    host: str
    cpu: str
    threads: int
    accelerator: str
    precision: str
    gpus: list[Gpu] = []


class Metrics(Model):
    test_acc: Accuracy
    test_loss: Loss


class Flops(Model):
    forward: int
    train: int


class Inference(Model):
    batch_size: int
    samples_per_sec: Rate
    latency_ms_p50: Seconds
    latency_ms_p90: Seconds
    flops_per_sec: Rate | None = None


class Resources(Model):
    """Memory and energy; a counter this machine lacks is named in its ``*_unavailable`` field."""

    peak_host_rss_mb: Rate | None = None
    peak_host_rss_scope: str | None = None  # "job", or "process" where the OS cannot reset the peak
    gpu_peak_allocated_mb: Rate | None = None
    gpu_peak_reserved_mb: Rate | None = None
    energy_seconds: Seconds | None = None  # the training steps' window the energy covers
    energy_precise: bool | None = None  # False: a window shorter than the counters' update period
    energy_source: Literal["cpu", "gpu"] | None = None  # which counter average_watts and samples_per_joule use
    cpu_energy_j: Rate | None = None  # RAPL: the whole CPU package, other processes included
    cpu_energy_unavailable: str | None = None
    gpu_energy_j: Rate | None = None
    gpu_energy_unavailable: str | None = None
    average_watts: Rate | None = None
    samples_per_joule: Rate | None = None
    gpu_busy_percent: Annotated[float, Field(ge=0, le=100)] | None = None  # kernel time over wall time


class Interruption(Model):
    signal: str
    epochs_finished: int
    steps_finished: int


class ResultsRecord(Model):
    schema_version: int = 1  # absent in version 1
    status: Status
    reason: str | None = None
    run_name: str | None = None
    arch: str | None = None
    device: str | None = None  # the device config's name (auto, cpu, gpu, mps); device_name is the hardware
    epochs: int | None = None
    started: str | None = None
    finished: str | None = None
    config: dict[str, Any] = {}
    fingerprint: Fingerprint | None = None
    epoch_table: list[Epoch] = []
    metrics: Metrics | None = None
    train_seconds: Seconds | None = None
    overall: Rates | None = None
    steady: Rates | None = None
    steady_excludes: str | None = None
    partial: bool = False  # the figures cover only the epochs that finished
    flops_per_sample: Flops | None = None
    peak_flops: float | None = None
    time_to_val_acc: dict[str, Seconds | None] = {}
    inference: Inference | None = None
    compile_seconds: Seconds | None = None
    capture_seconds: Seconds | None = None  # execution=graph: warm-up and CUDA-graph capture, off the clock
    # scale-out (absent in records before it: one device); samples/s above are global, all ranks together
    world_size: int = 1
    strategy: str | None = None  # Lightning's strategy class, e.g. DDPStrategy
    backend: str | None = None  # the process group's: nccl, gloo; None on one device
    per_device_batch_size: int | None = None
    global_batch_size: int | None = None
    wall_seconds: Seconds | None = None
    interruption: Interruption | None = None
    diverged_epoch: int | None = None
    resources: Resources | None = None
    traceback: str | None = None  # an unexpected failure's, so the screen shows one line

    @model_validator(mode="after")
    def _ok_has_results(self) -> ResultsRecord:
        if self.status == "ok" and (self.metrics is None or self.overall is None):
            raise ValueError("status is ok but metrics or overall throughput is missing")
        return self

    @classmethod
    def start(cls, cfg: Any) -> ResultsRecord:
        from omegaconf import OmegaConf

        return cls(
            schema_version=SCHEMA_VERSION, status="running", run_name=cfg.run_name, arch=cfg.arch.name,
            device=cfg.device.name, epochs=cfg.epochs, started=now(), config=OmegaConf.to_container(cfg, resolve=True),
            world_size=cfg.device.devices, per_device_batch_size=cfg.batch_size,
            global_batch_size=cfg.batch_size * cfg.device.devices,
        )  # fmt: skip

    @property
    def train_speed(self) -> Rates | None:
        """The headline training speed: steady state when there is one, else overall."""
        return self.steady or self.overall

    @property
    def train_basis(self) -> str | None:
        return "steady" if self.steady else "overall" if self.overall else None

    @property
    def host_bound(self) -> bool:
        """The GPU was busy under half the time: the number measures the host's launching, not the GPU."""
        busy = self.resources.gpu_busy_percent if self.resources else None
        return busy is not None and busy < HOST_BOUND_BELOW

    @property
    def on_gpu(self) -> bool:
        return self.fingerprint is not None and self.fingerprint.accelerator == "cuda" and bool(self.fingerprint.gpus)

    @property
    def device_name(self) -> str | None:
        """The hardware that trained: the GPU's name on CUDA, else the CPU's model (MPS: the chip's)."""
        if self.fingerprint is None:
            return None
        return self.fingerprint.gpus[0].name if self.on_gpu else self.fingerprint.cpu

    @property
    def device_label(self) -> str | None:
        """``device_name``, with the thread count where the CPU trained."""
        if self.fingerprint is None or self.on_gpu:
            return self.device_name
        return f"{self.device_name} ({self.fingerprint.threads} threads)"

    def summary(self) -> str:
        """The one line a job ends with."""
        name = f"{self.arch} {self.device}{f' x{self.world_size}' if self.world_size > 1 else ''} epochs={self.epochs}"
        if self.status != "ok":
            return f"{name}: {self.status}: {self.reason}"
        speed = self.train_speed
        return (
            f"{name}: test acc {self.metrics.test_acc:.4f}, "  # type: ignore[union-attr]
            f"train {speed.samples_per_sec:,.0f} samples/s ({self.train_basis}), "  # type: ignore[union-attr]
            f"wall {self.wall_seconds or 0:.1f} s"
        )


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_record(folder: str | Path, record: ResultsRecord) -> Path:
    """Validate ``record`` and write it so that a reader never sees half a file, even if the job dies mid-write."""
    text = ResultsRecord.model_validate(record.model_dump()).model_dump_json(indent=2)
    path = Path(folder) / RECORD_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def refuse_taken(out_dir: Path) -> None:
    """A job never writes into a folder that holds another run's record or TensorBoard events."""
    taken = [p.name for p in (out_dir / RECORD_NAME, *out_dir.glob("events.out.tfevents*")) if p.exists()]
    if taken:
        raise OutputFolderTaken(
            f"{out_dir} already holds another run ({', '.join(taken[:2])}): give this run its own folder "
            f"(leave hydra.run.dir and hydra.sweep.dir at their defaults, or name a new one)"
        )


def read_record(path: Path) -> ResultsRecord:
    """One record; raises ValueError with a one-line reason when it is not a valid one."""
    with contextlib.suppress(OSError, ValidationError):  # the fast path (pydantic parses the JSON itself)
        return ResultsRecord.model_validate_json(path.read_bytes())
    try:  # the path that names what is wrong
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not readable JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError("not a results record (not a JSON object)")
    try:
        return ResultsRecord.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "record"
        raise ValueError(f"{where}: {first['msg']} ({err.error_count()} problem(s))") from err


def record_paths(folders: Iterable[str | Path]) -> list[Path]:
    """Every results.json under ``folders``, sorted. Linked folders are not entered (a link loop ends nowhere),
    nor hidden ones (.hydra, .submitit: they never hold a record)."""
    found = set()
    for folder in folders:
        for parent, subfolders, files in os.walk(folder):
            subfolders[:] = [d for d in subfolders if not d.startswith(".")]
            if RECORD_NAME in files:
                found.add(os.path.join(parent, RECORD_NAME))
    return [Path(p) for p in sorted(found)]
