"""The results record: one typed, versioned JSON file per job, validated on every write and every read."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from hwbench.errors import OutputFolderTaken
from hwbench.record.machine import Fingerprint, JobProcess, MachineLoad
from hwbench.record.parts import (
    MAX_TRACEBACK,
    CpuKernels,
    ExecutionPart,
    Inference,
    Interruption,
    Metrics,
    Name,
    Part,
    Phases,
    Rates,
    Resources,
    Seconds,
    Text,
    Training,
    clipped,
)
from hwbench.record.plausible import impossible
from hwbench.record.untrusted import file_bytes
from hwbench.record.writing import writing

RECORD_NAME = "results.json"
# 1: hwbench 0.1's unversioned records; 2: flat training figures; 3: no job, machine_load; 4: no repeat, stability;
# 5: no phases, no kept kernel choice, no job start method;
# 6: no nodes, devices_per_node; 7: the kernel choice copied into the fingerprint (the record's cpu_kernels holds it)
SCHEMA_VERSION = 8
HOST_BOUND_BELOW = 50.0  # GPU busy %
Status = Literal["running", "ok", "skipped", "failed", "interrupted", "diverged"]


class ResultsRecord(Part):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings", validate_assignment=True)

    schema_version: int = SCHEMA_VERSION
    status: Status
    reason: Text | None = None
    run_name: Name | None = None
    repeat: int | None = None  # which repeat of its sweep point (1, 2, ...: the config's repeat of repeats)
    arch: Name | None = None
    # the device config's name: cpu, gpu or mps (device=auto: the one it resolved to; older records say auto);
    # device_name is the hardware
    device: Name | None = None
    epochs: int | None = None
    started: Name | None = None
    finished: Name | None = None
    wall_seconds: Seconds | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    job: JobProcess | None = None  # the process it ran in
    phases: Phases | None = None  # where its wall time went
    fingerprint: Fingerprint | None = None
    execution: ExecutionPart | None = None
    cpu_kernels: CpuKernels | None = None  # CPU runs of nets with hwbench's CPU layers: which kernels, and why
    # scale-out; samples/s are global, all ranks together: world_size = nodes x devices_per_node
    world_size: int = 1
    nodes: int = 1  # machines (device.nodes)
    devices_per_node: int | None = None  # device.devices; None in older records (one node: world_size)
    strategy: Name | None = None  # Lightning's strategy class, e.g. DDPStrategy
    backend: Name | None = None  # the process group's: nccl, gloo; None on one device
    per_device_batch_size: int | None = None
    global_batch_size: int | None = None
    training: Training | None = None
    metrics: Metrics | None = None
    inference: Inference | None = None
    resources: Resources | None = None
    machine_load: MachineLoad | None = None  # the machine's other load while the training was timed
    not_measured: list[Name] = Field(
        default_factory=list
    )  # what the config's measure switched off (~measure.NAME): never a zero
    interruption: Interruption | None = None
    diverged_epoch: int | None = None
    traceback: Annotated[str, clipped(MAX_TRACEBACK, keep_end=True)] | None = None  # an unexpected failure's

    @model_validator(mode="after")
    def _ok_has_results(self) -> ResultsRecord:
        if self.status == "ok" and (self.metrics is None or self.training is None or self.training.overall is None):
            raise ValueError("status is ok but metrics or overall throughput is missing")
        return self

    @classmethod
    def start(cls, cfg: Any) -> ResultsRecord:
        from omegaconf import OmegaConf

        nodes = cfg.device.get("nodes", 1)
        return cls(
            schema_version=SCHEMA_VERSION, status="running", run_name=cfg.run_name, repeat=cfg.repeat,
            arch=cfg.arch.name, device=cfg.device.name, epochs=cfg.epochs, started=now(),
            config=OmegaConf.to_container(cfg, resolve=True), world_size=cfg.device.devices * nodes,
            nodes=nodes, devices_per_node=cfg.device.devices, per_device_batch_size=cfg.batch_size,
            global_batch_size=cfg.batch_size * cfg.device.devices * nodes,
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
    def noise(self) -> list[str]:
        """Why the timed window was noisy (other load on the machine); empty when it was quiet or not measured."""
        return self.machine_load.noise if self.machine_load else []

    @property
    def unsteady(self) -> str | None:
        """Why the run's own speed was unsteady (its sub-windows spread), None when it was steady or not measured."""
        stability = self.training.stability if self.training else None
        return stability.unsteady if stability else None

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

    @property
    def ranks(self) -> str:
        """' x2' on one machine's 2 devices, ' 2 nodes x1' across machines, '' on one device."""
        if self.nodes > 1:
            return f" {self.nodes} nodes x{self.devices_per_node or self.world_size // self.nodes}"
        return f" x{self.world_size}" if self.world_size > 1 else ""

    def summary(self) -> str:
        """The one line a job ends with."""
        name = f"{self.arch} {self.device}{self.ranks} epochs={self.epochs}"
        if self.status != "ok":
            return f"{name}: {self.status}: {self.reason}"
        speed = self.train_speed
        return (
            (
                f"{name}: test acc {self.metrics.test_acc:.4f}, "  # type: ignore[union-attr]
                f"train {speed.samples_per_sec:,.0f} samples/s ({self.train_basis}), "  # type: ignore[union-attr]
                f"wall {self.wall_seconds or 0:.1f} s"
            )
            + (f", noisy: {'; '.join(self.noise)}" if self.noise else "")
            + (f", unsteady: {self.unsteady}" if self.unsteady else "")
            + (f", not measured: {', '.join(self.not_measured)}" if self.not_measured else "")
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


def read_record(path: str | Path) -> ResultsRecord:
    """One record, read as untrusted input (hwbench.record.untrusted): strictly (a number in quotes is no number)
    and claiming nothing impossible (hwbench.record.plausible); raises ValueError with a one-line reason when it is
    not a valid one."""
    record = validated(file_bytes(path))
    if why := impossible(record):
        raise ValueError(why)
    return record


def validated(data: bytes) -> ResultsRecord:
    with contextlib.suppress(ValidationError):  # the fast path: pydantic parses the JSON itself
        record = ResultsRecord.model_validate_json(data, strict=True)
        if "schema_version" in record.model_fields_set and record.schema_version == SCHEMA_VERSION:
            return record  # an older version, even one that happens to validate, takes the upgrading path
    try:  # the path that upgrades older versions and names what is wrong
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not readable JSON ({err})") from err
    except RecursionError as err:
        raise ValueError("not a results record (JSON nested too deeply)") from err
    return parse_record(parsed)


def parse_record(data: object) -> ResultsRecord:
    """A record from parsed JSON of any schema version this hwbench reads, in the current shape, validated strictly:
    no string is read as a number, no float as an integer; raises ValueError with a one-line reason when it is not a
    valid one."""
    if not isinstance(data, dict):
        raise ValueError("not a results record (not a JSON object)")
    refuse_newer(data.get("schema_version", 1))  # named plainly, not as a validation error
    try:
        return ResultsRecord.model_validate(upgrade(data), strict=True)
    except RecursionError as err:
        raise ValueError("not a results record (nested too deeply)") from err
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "record"
        raise ValueError(f"{where}: {first['msg']} ({err.error_count()} problem(s))") from err


# version 2 kept the training clock's figures at the top level, and the preparation time under two names
V2_TRAINING = {"epoch_table": "epochs", "train_seconds": "seconds", "overall": "overall", "steady": "steady",
               "steady_excludes": "steady_excludes", "partial": "partial", "flops_per_sample": "flops_per_sample",
               "time_to_val_acc": "time_to_val_acc"}  # fmt: skip


def refuse_newer(version: object) -> None:
    """A record from a newer hwbench may mean anything: never read as if it were this version's."""
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ValueError(f"written by a newer hwbench (schema version {version}; this one reads 1 to "
                         f"{SCHEMA_VERSION}): upgrade hwbench to read it")  # fmt: skip


def without_fingerprint_kernels(data: dict[str, Any]) -> dict[str, Any]:
    """Older versions copied the kernel choice into the fingerprint: the record's ``cpu_kernels`` is its one place."""
    fingerprint = data.get("fingerprint")
    if not isinstance(fingerprint, dict) or "cpu_kernels" not in fingerprint:
        return data
    return data | {"fingerprint": {k: v for k, v in fingerprint.items() if k != "cpu_kernels"}}


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A record of an older schema version in the current version's shape, its version number kept: the one
    place where reading is lenient (parse_record has refused a newer version already)."""
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version >= SCHEMA_VERSION:
        return data  # a bad version is named by validation; the current one is read strictly
    data = without_fingerprint_kernels(data)
    if version in (3, 4, 5, 6, 7):  # versions 4 to 7 only added parts
        return data
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
    return upgraded
