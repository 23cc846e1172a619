"""The results record: one typed, versioned JSON file per job, validated on every write and every read."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hwbench.errors import OutputFolderTaken
from hwbench.outputs import writing

RECORD_NAME = "results.json"
SCHEMA_VERSION = 3  # 1: the unversioned records of hwbench 0.1; 2: flat training figures. Both still read
HOST_BOUND_BELOW = 50.0  # GPU busy %
Status = Literal["running", "ok", "skipped", "failed", "interrupted", "diverged"]

Rate = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # a speed is a finite, non-negative number
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Milliseconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Accuracy = Annotated[float, Field(ge=0, le=1)]
Loss = float  # NaN and inf allowed: that is what a diverged run's loss is


class Part(BaseModel):
    """A typed part of the record. Unknown fields are refused: a misspelled one fails, never rides along.
    NaN is written as "NaN", which json reads back."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class Gpu(Part):
    """One of the machine's GPUs, as torch reports it."""

    name: str
    memory_gb: float | None = None
    capability: str | None = None


class Rates(Part):
    """Throughput over a window of training steps (Lightning's ``Throughput``); MFU where the peak is known."""

    samples_per_sec: Rate
    batches_per_sec: Rate
    flops_per_sec: Rate | None = None
    mfu: Rate | None = None


class Epoch(Part):
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


class Fingerprint(Part):
    """The machine that ran (hwbench/fingerprint.py): host, CPU, GPUs, software versions.

    The fields compare reads are required; the others may be missing from older records."""

    host: str
    cpu: str
    threads: int
    accelerator: str
    precision: str
    gpus: list[Gpu] = []
    os: str | None = None
    physical_cores: int | None = None
    logical_cores: int | None = None
    ram_gb: float | None = None
    driver: str | None = None
    cuda: str | None = None
    cudnn: int | None = None
    python: str | None = None
    torch: str | None = None
    lightning: str | None = None
    cpu_isa: str | None = None  # the widest vector ISA torch's CPU kernels use here: AVX2, AVX512, ...
    cpu_kernels: dict[str, str] | None = None  # CPU runs: the kernel each kind of layer ran (see CpuKernels)


class Metrics(Part):
    test_acc: Accuracy
    test_loss: Loss


class Flops(Part):
    forward: int
    train: int


class Inference(Part):
    batch_size: int
    samples_per_sec: Rate
    latency_ms_p50: Seconds
    latency_ms_p90: Seconds
    flops_per_sec: Rate | None = None


class Resources(Part):
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
    gpu_busy_percent: Annotated[float, Field(ge=0, le=100)] | None = None  # GPU time over wall time
    gpu_busy_method: str | None = None  # how it was read (hwbench.resources.BusyProbe)
    gpu_busy_unavailable: str | None = None


class KernelChoice(Part):
    """How one kind of layer (linear, conv2d, dropout) ran on the CPU, and why that way."""

    kernel: str  # torch (torch's own layer), or the alternative: onednn, channels_last, bytes
    how: Literal["measured", "forced", "only one applies", "compiled"]
    ms_per_step: dict[str, Milliseconds] = {}  # measured: each candidate's median training step (no update)


class CpuKernels(Part):
    """The CPU kernels of the net's layers (hwbench/cpu_kernels), chosen before training, off the clock."""

    layers: dict[str, KernelChoice]  # by kind, the kinds the net has
    seconds: Seconds  # the choosing's time; 0 when cached
    cached: bool = False  # chosen by an earlier job of this process, for the same net, shapes, threads, settings
    rounds: int  # alternated rounds of timing per candidate

    @property
    def chosen(self) -> dict[str, str]:
        """Each kind's kernel, as the fingerprint names them."""
        return {kind: choice.kernel for kind, choice in self.layers.items()}


class Interruption(Part):
    signal: str
    epochs_finished: int
    steps_finished: int


class ExecutionPart(Part):
    """How the steps executed (hwbench/execution): the strategy, its variant, and its preparation off the clock."""

    kind: str  # eager | compiled | graph | fused
    mode: str | None = None  # the torch.compile mode, where one compiles
    steps_per_graph: int | None = None  # optimizer steps per CUDA-graph replay
    prepare_seconds: Seconds | None = None  # compiling and capturing, before the training clock starts


class Peak(Part):
    """The device's dense peak FLOP/s that MFU divides by, what precision it is for, and where it comes from."""

    flops_per_sec: Rate
    precision: str  # fp32 | tf32 | bf16 | fp16
    source: str


class Training(Part):
    """What the training clock measured (hwbench/monitor.py): epochs, steady and overall throughput, MFU."""

    seconds: Seconds | None = None  # the training loop's own time, validation excluded
    epochs: list[Epoch] = []
    overall: Rates | None = None
    steady: Rates | None = None
    steady_excludes: str | None = None
    partial: bool = False  # the figures cover only the epochs that finished
    flops_per_sample: Flops | None = None
    peak: Peak | None = None
    mfu_unavailable: str | None = None
    time_to_val_acc: dict[str, Seconds | None] = {}


class ResultsRecord(Part):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings", validate_assignment=True)

    schema_version: int = SCHEMA_VERSION
    status: Status
    reason: str | None = None
    run_name: str | None = None
    arch: str | None = None
    device: str | None = None  # the device config's name (auto, cpu, gpu, mps); device_name is the hardware
    epochs: int | None = None
    started: str | None = None
    finished: str | None = None
    wall_seconds: Seconds | None = None
    config: dict[str, Any] = {}
    fingerprint: Fingerprint | None = None
    execution: ExecutionPart | None = None
    cpu_kernels: CpuKernels | None = None  # CPU runs of nets with hwbench's CPU layers: which kernels, and why
    # scale-out; samples/s are global, all ranks together
    world_size: int = 1
    strategy: str | None = None  # Lightning's strategy class, e.g. DDPStrategy
    backend: str | None = None  # the process group's: nccl, gloo; None on one device
    per_device_batch_size: int | None = None
    global_batch_size: int | None = None
    training: Training | None = None
    metrics: Metrics | None = None
    inference: Inference | None = None
    resources: Resources | None = None
    interruption: Interruption | None = None
    diverged_epoch: int | None = None
    traceback: str | None = None  # an unexpected failure's, so the screen shows one line

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        return upgrade(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _ok_has_results(self) -> ResultsRecord:
        if self.status == "ok" and (self.metrics is None or self.training is None or self.training.overall is None):
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
        return (self.training.steady or self.training.overall) if self.training else None

    @property
    def train_basis(self) -> str | None:
        if self.training is None:
            return None
        return "steady" if self.training.steady else "overall" if self.training.overall else None

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
    """Validate ``record`` and write it so that a reader never sees half a file, even if the job dies mid-write:
    a temporary file, then a rename. If that fails (a full disk), the last record written stays and the
    temporary goes; raises :class:`OutputUnwritable`. The file's mode follows the umask, as every other output's."""
    text = ResultsRecord.model_validate(record.model_dump()).model_dump_json(indent=2)
    path = Path(folder) / RECORD_NAME
    tmp = path.with_name(f".results-{secrets.token_hex(6)}.json")  # hidden: compare looks for results.json only
    try:
        with writing(path.parent):
            path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("x", encoding="utf-8") as f:  # "x": created with 0666 less the umask (mkstemp's is 0600)
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:  # a full disk, or anything else that stops the write half-way
        with contextlib.suppress(OSError):  # never created (a read-only folder), or cannot go either
            tmp.unlink()
        raise
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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not readable JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError("not a results record (not a JSON object)")
    version = data.get("schema_version", 1)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ValueError(f"written by a newer hwbench (schema version {version}; this one reads 1 to "
                         f"{SCHEMA_VERSION}): upgrade hwbench to read it")  # fmt: skip
    try:
        return ResultsRecord.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "record"
        raise ValueError(f"{where}: {first['msg']} ({err.error_count()} problem(s))") from err


# version 2 kept the training clock's figures at the top level, and the preparation time under two names
V2_TRAINING = {"epoch_table": "epochs", "train_seconds": "seconds", "overall": "overall", "steady": "steady",
               "steady_excludes": "steady_excludes", "partial": "partial", "flops_per_sample": "flops_per_sample",
               "time_to_val_acc": "time_to_val_acc"}  # fmt: skip


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A record of an older schema version in the current version's shape, its version number kept: the one
    place where reading is lenient. (read_record refuses a newer version than this hwbench knows.)"""
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version >= 3:
        return data  # a bad version is named by validation; the current one is read strictly
    moved = (*V2_TRAINING, "peak_flops", "compile_seconds", "capture_seconds")
    upgraded = {k: v for k, v in data.items() if k not in moved} | {"schema_version": version}
    if any(key in data for key in V2_TRAINING):
        upgraded["training"] = {new: data[old] for old, new in V2_TRAINING.items() if old in data}
    cfg = data.get("config") if isinstance(data.get("config"), dict) else {}
    compiled = cfg.get("compile")
    if cfg.get("execution") == "graph":
        upgraded["execution"] = {"kind": "graph", "prepare_seconds": data.get("capture_seconds")}
    elif compiled:
        mode = "default" if compiled is True else compiled
        upgraded["execution"] = {"kind": "compiled", "mode": mode, "prepare_seconds": data.get("compile_seconds")}
    elif cfg:
        upgraded["execution"] = {"kind": "eager"}
    if "execution" in data:  # already upgraded once (validating an upgraded record again)
        upgraded["execution"] = data["execution"]
    return upgraded


def find_records(folders: Iterable[str | Path]) -> list[tuple[Path, ResultsRecord]]:
    """Every valid record under ``folders`` (recursively), oldest first.

    An invalid one is named on stderr in one line and skipped: one truncated or hand-edited copy from
    another machine should not hide every other result.
    """
    records = []
    for path in record_paths(folders):
        try:
            records.append((path, read_record(path)))
        except ValueError as err:
            warn_skipping(path, str(err))
    return sorted(records, key=lambda pr: pr[1].started or "")


def record_paths(folders: Iterable[str | Path]) -> list[Path]:
    """Every results.json under ``folders``, in order, linked folders followed and each folder read once.

    What cannot be followed (a dangling link, a symlink loop, a folder that cannot be read) is named on stderr in
    one warning line each, rather than passed over without a word as ``Path.rglob`` does.
    """
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()  # (device, inode) of each folder read: a loop or a second link reads none
    stack = [Path(folder) for folder in folders][::-1]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            warn_skipping(folder, err.strerror or str(err))
            continue
        subfolders = []
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink() and (problem := link_problem(path, folder)):
                warn_skipping(path, problem)
            elif entry.is_dir():
                subfolders.append(path)
            elif entry.name == RECORD_NAME:
                found.append(path)
        stack.extend(reversed(subfolders))
    return found


def link_problem(link: Path, folder: Path) -> str | None:
    """Why ``link`` (in ``folder``) cannot be followed, or None when it can."""
    try:
        st = link.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symlink loop"
        return f"a dangling link to {os.readlink(link)} ({err.strerror})"
    if stat.S_ISDIR(st.st_mode) and folder.resolve().is_relative_to(target := link.resolve()):
        return f"a symlink loop (back to {target})"
    return None


def warn_skipping(path: Path, why: str) -> None:
    print(f"warning: skipping {path}: {why}".replace("\n", " "), file=sys.stderr)
