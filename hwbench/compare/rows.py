"""One compact row per results record (scaling is set on rows by ``scaling.py``).

A row keeps what the tables and plots show, never the record itself: 50,000 records fit in memory as rows,
not as records with their epoch tables. Records may come from several machines (sweep folders copied together).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import statistics
import sys
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, NamedTuple

from hwbench.record.machine import Fingerprint
from hwbench.record.parts import MAX_NAME, Epoch
from hwbench.record.results import ResultsRecord

SAYS = {"gpu": "cuda"}  # a device name that says its accelerator already: 'gpu', not 'gpu (cuda)'
Curve = tuple[tuple[float, float], ...]  # (cumulative training seconds, validation accuracy) per epoch
JOULES_PER_KWH = 3.6e6


class Machine(NamedTuple):
    """A machine's fingerprint as the report shows it (each value short text, or None where not recorded)."""

    cpu: str | None
    cores: str | None  # physical cores, logical CPUs
    ram_gb: float | None
    gpus: str | None
    driver: str | None
    cuda: str | None
    torch: str | None
    lightning: str | None
    python: str | None
    os: str | None


@dataclass(slots=True)
class Row:
    """One run as the comparison shows it; anything a skipped or failed record lacks stays None."""

    arch: str
    job: str  # the job's folder name: tells apart the jobs of one sweep
    device: str  # the device's name, and its accelerator where that says more: 'auto (cuda)' (older records)
    host: str | None
    model: str | None  # the GPU's or CPU's name, shortened
    hardware: str  # the model, its CPU threads, its device count: what a run is compared on
    threads: int | None
    precision: str | None
    execution: str | None  # how the steps ran: eager, compiled, graph, fused
    world_size: int
    batch_size: int | None  # per device
    global_batch_size: int | None
    epochs: int | None
    test_acc: float | None
    train_samples_per_sec: float | None
    train_basis: str | None  # steady or overall
    epoch_seconds: float | None  # median over the epochs after the first
    seconds_to_97: float | None
    seconds_to_98: float | None
    seconds_to_99: float | None
    mfu_of_datasheet_peak: float | None  # against the GPU's datasheet dense peak (hwbench/measure/peaks.py)
    mfu_of_measured_peak: float | None  # against the device's measured matmul peak: any device
    inference_samples_per_sec: float | None
    latency_ms_p50: float | None
    gpu_busy_percent: float | None
    samples_per_joule: float | None
    energy_source: str | None
    average_watts: float | None
    peak_host_rss_mb: float | None
    gpu_peak_allocated_mb: float | None
    host_bound: bool
    noisy: str | None  # why the machine was not quiet while the run was timed: never aggregated
    unsteady: str | None  # why the run's own speed wandered between its sub-windows: never aggregated
    repeat: int | None  # which repeat of its sweep point
    status: str
    timed: bool  # an ok run with a training speed: the rows that get speed-ups and plots
    reason: str | None
    run_name: str | None
    started: str | None
    path: str
    scaling_group: str  # equal for runs that differ only in their device count
    curve: Curve  # for the accuracy plot; not a column
    # training samples/s of each epoch that has one, where there are two or more (one is no rate over time: it stays
    # out of the rows sent between processes); not a column
    epoch_rates: tuple[float, ...]
    flops_per_sec: float | None  # the training's, at the headline speed (steady, else overall)
    peak_flops_per_sec: float | None  # the device's datasheet dense peak, where hwbench knows it
    measured_peak_flops_per_sec: float | None  # the device's measured matmul peak
    machine: Machine | None  # the fingerprint, for the report's list of machines; not a column
    usable_cores: int | None  # the CPUs the job's process could use: what DDP ranks on one CPU share
    # the folder argument the record was found under ('laptop', 'server'): set by reading.read_rows
    source: str = ""
    scaling_speedup: float | None = None  # samples/s over that of the smallest run of its group (scaling.py)
    scaling_efficiency: float | None = None  # that speed-up over the ratio of the devices or cores used
    usd_per_hour: float | None = None  # what the run's devices cost an hour, all of them (--price, pricing.py)
    not_measured: str | None = None  # what the run's config switched off (~measure.NAME): blank, never a zero

    @property
    def label(self) -> str:
        """What a user types to --baseline, and sees in the captions: source:host/device/run_name."""
        return f"{self.source}:{self.host}/{self.device}/{self.run_name}"

    @property
    def mfu(self) -> float | None:
        """The MFU the tables show: against the datasheet's peak where there is one, else the measured peak."""
        return self.mfu_of_datasheet_peak if self.mfu_of_datasheet_peak is not None else self.mfu_of_measured_peak

    @property
    def mfu_measured(self) -> bool:
        """The MFU shown is the measured peak's: the device has no datasheet peak."""
        return self.mfu_of_datasheet_peak is None and self.mfu_of_measured_peak is not None

    # cost and energy per result: derived where shown (compare.csv, the report), never stored on 50,000 rows
    @property
    def usd_per_million_samples(self) -> float | None:
        if self.usd_per_hour is None or not self.train_samples_per_sec:
            return None
        return self.usd_per_hour * 1e6 / self.train_samples_per_sec / 3600

    @property
    def usd_to_97(self) -> float | None:
        return self.usd_for(self.seconds_to_97)

    @property
    def usd_to_99(self) -> float | None:
        return self.usd_for(self.seconds_to_99)

    def usd_for(self, seconds: float | None) -> float | None:
        """What ``seconds`` of this run's training cost, where it is priced."""
        return None if self.usd_per_hour is None or seconds is None else self.usd_per_hour * seconds / 3600

    @property
    def kwh_per_million_samples(self) -> float | None:
        return 1e6 / self.samples_per_joule / JOULES_PER_KWH if self.samples_per_joule else None


# a row as its values in order: how the workers send rows (a tuple pickles and rebuilds in two thirds of the
# time of a dataclass of slots, by the thousand)
ROW_VALUES = attrgetter(*(f.name for f in fields(Row)))


MODEL_NOISE = re.compile(r"\((R|TM|tm)\)|\bCPU @ .*|@ .*|\b\d+-Core\b|\bProcessor\b|^NVIDIA\s+")


@functools.cache  # a few models across thousands of rows
def short_model(name: str) -> str:
    """'Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz' -> 'Intel Xeon Platinum 8480+': fits in a column."""
    return " ".join(MODEL_NOISE.sub("", name).split())


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}  # a hand-edited config may hold anything


def as_int(value: Any) -> int | None:
    """A config's number, or None where a hand-edited config holds something else (rows are sorted by it)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def named(value: object) -> str:
    """A name from a record's free-form config, as long as the schema lets a name be (a row keeps it)."""
    return str(value)[:MAX_NAME]


def shared(value: object) -> str | None:
    """Strings that repeat across thousands of rows (hosts, models, archs) are stored once."""
    return None if value is None else sys.intern(named(value))


def to_row(path: str, record: ResultsRecord) -> Row:
    cfg, fp, speed = record.config, record.fingerprint, record.train_speed
    inference, resources = record.inference, record.resources
    device_cfg = as_dict(cfg.get("device"))
    accelerator = fp.accelerator if fp else shared(device_cfg.get("accelerator"))
    device = named(record.device or device_cfg.get("name") or "?")
    training = record.training
    epochs = training.epochs if training else []
    to_target = training.time_to_val_acc if training else {}
    model = short_model(record.device_name) if record.device_name else None
    threads = fp.threads if fp else as_int(device_cfg.get("threads"))
    cpu_threads = threads if accelerator != "cuda" else None  # a GPU run's host threads say nothing of it
    return Row(
        arch=sys.intern(named(record.arch or as_dict(cfg.get("arch")).get("name") or "?")),
        job=os.path.basename(os.path.dirname(path)),
        device=sys.intern(device if accelerator in (None, device, SAYS.get(device)) else f"{device} ({accelerator})"),
        host=shared(fp.host if fp else None),
        model=shared(model),
        hardware=sys.intern(hardware(model or device, cpu_threads, record.world_size, record.nodes)),
        threads=threads,
        precision=shared(fp.precision if fp else device_cfg.get("precision")),
        execution=shared(record.execution.kind if record.execution else None),
        world_size=record.world_size,
        batch_size=record.per_device_batch_size or as_int(cfg.get("batch_size")),
        global_batch_size=record.global_batch_size or as_int(cfg.get("batch_size")),
        epochs=record.epochs,
        test_acc=record.metrics.test_acc if record.metrics else None,
        train_samples_per_sec=speed.samples_per_sec if speed else None,
        train_basis=shared(record.train_basis),
        epoch_seconds=steady_epoch_seconds(epochs),
        seconds_to_97=to_target.get("0.97"),
        seconds_to_98=to_target.get("0.98"),
        seconds_to_99=to_target.get("0.99"),
        mfu_of_datasheet_peak=speed.mfu if speed else None,
        mfu_of_measured_peak=speed.mfu_of_measured_peak if speed else None,
        inference_samples_per_sec=inference.samples_per_sec if inference else None,
        latency_ms_p50=inference.latency_ms_p50 if inference else None,
        gpu_busy_percent=resources.gpu_busy_percent if resources else None,
        samples_per_joule=resources.samples_per_joule if resources else None,
        energy_source=shared(resources.energy_source if resources else None),
        average_watts=resources.average_watts if resources else None,
        peak_host_rss_mb=resources.peak_host_rss_mb if resources else None,
        gpu_peak_allocated_mb=resources.gpu_peak_allocated_mb if resources else None,
        host_bound=record.host_bound,
        noisy="; ".join(record.noise) or None,
        unsteady=record.unsteady,
        not_measured=", ".join(record.not_measured) or None,
        repeat=record.repeat,
        status=sys.intern(record.status),
        timed=record.status == "ok" and bool(speed and speed.samples_per_sec),
        reason=record.reason,
        run_name=shared(record.run_name),
        started=record.started,
        path=path,
        scaling_group=scaling_key(record),
        curve=tuple((e.train_seconds, e.val_acc) for e in epochs if e.val_acc is not None),
        epoch_rates=epoch_rates(epochs),
        flops_per_sec=speed.flops_per_sec if speed else None,
        peak_flops_per_sec=peak.flops_per_sec if (peak := training and training.peak) else None,
        measured_peak_flops_per_sec=probe.flops_per_sec if (probe := training and training.measured_peak) else None,
        machine=machine(fp),
        usable_cores=fp.usable_cores if fp else None,
    )


def machine(fp: Fingerprint | None) -> Machine | None:
    if fp is None:
        return None
    gpu = fp.gpus[0] if fp.gpus else None
    return shared_machine(fp.cpu, fp.physical_cores, fp.logical_cores, fp.ram_gb, len(fp.gpus),
                          gpu and gpu.name, gpu and gpu.memory_gb,
                          fp.driver, fp.cuda, fp.torch, fp.lightning, fp.python, fp.os)  # fmt: skip


@functools.lru_cache(maxsize=1024)  # a few machines across thousands of rows: one tuple each, pickled once a chunk
def shared_machine(cpu: str, physical: int | None, logical: int | None, ram_gb: float | None, gpus: int,
                   gpu: str | None, memory_gb: float | None, *software: str | None) -> Machine:  # fmt: skip
    cores = f"{physical} cores, {logical} logical" if physical else None
    gpu_text = f"{gpus} x {gpu}" + (f" ({memory_gb:g} GB)" if memory_gb else "") if gpu else None
    return Machine(*map(shared, (cpu, cores)), ram_gb, shared(gpu_text), *map(shared, software))  # type: ignore[arg-type]


def epoch_rates(epochs: list[Epoch]) -> tuple[float, ...]:
    rates = tuple(e.samples_per_sec for e in epochs if e.samples_per_sec is not None)
    return rates if len(rates) > 1 else ()


def steady_epoch_seconds(epochs: list[Epoch]) -> float | None:
    """The median epoch's seconds, the first (warm-up) left out where there are several."""
    steady = epochs[1:] if len(epochs) > 1 else epochs
    return statistics.median(e.seconds for e in steady) if steady else None


def hardware(model: str, threads: int | None, world_size: int, nodes: int = 1) -> str:
    """'AMD EPYC 7B13, 2 thr', 'H100 80GB HBM3 x4', 'H100 80GB HBM3, 2 nodes x4': what a run trained on, in one
    short cell."""
    ranks = f", {nodes} nodes x{world_size // nodes}" if nodes > 1 else f" x{world_size}" if world_size > 1 else ""
    return model + (f", {threads} thr" if threads else "") + ranks


def scaling_key(record: ResultsRecord) -> str:
    """What runs that differ only in their world size share: the host and the config less its device and node counts
    (and the CPU threads, which the ranks of one machine split between them, where the files live, which repeat).
    A digest of the values, not the text (a kilobyte a row), nor ``hash()`` (seeded per process: rows read in two
    workers would never group); the copies are shallow: only what is dropped."""
    cfg = dict(record.config)
    device = cfg["device"] = dict(as_dict(cfg.get("device")))
    data = cfg["data"] = dict(as_dict(cfg.get("data")))
    top = ("output_root", "run_name", "repeat", "repeats")
    for part, keys in ((cfg, top), (device, ("devices", "nodes", "threads")), (data, ("root",))):
        for key in keys:
            part.pop(key, None)
    host = record.fingerprint.host if record.fingerprint else None
    text = json.dumps([host, cfg], sort_keys=True, default=repr)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
