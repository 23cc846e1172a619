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
from typing import Any

from hwbench.record.parts import MAX_NAME, Epoch
from hwbench.record.results import ResultsRecord

SAYS = {"gpu": "cuda"}  # a device name that says its accelerator already: 'gpu', not 'gpu (cuda)'
Curve = tuple[tuple[float, float], ...]  # (cumulative training seconds, validation accuracy) per epoch


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
    scaling_speedup: float | None = None  # samples/s at N devices over samples/s at 1, same setup
    scaling_efficiency: float | None = None  # that speed-up over N

    @property
    def label(self) -> str:
        """What a user types to --baseline, and sees in the captions: host/device/run_name."""
        return f"{self.host}/{self.device}/{self.run_name}"

    @property
    def mfu(self) -> float | None:
        """The MFU the tables show: against the datasheet's peak where there is one, else the measured peak."""
        return self.mfu_of_datasheet_peak if self.mfu_of_datasheet_peak is not None else self.mfu_of_measured_peak

    @property
    def mfu_measured(self) -> bool:
        """The MFU shown is the measured peak's: the device has no datasheet peak."""
        return self.mfu_of_datasheet_peak is None and self.mfu_of_measured_peak is not None


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
    epochs = record.training.epochs if record.training else []
    model = short_model(record.device_name) if record.device_name else None
    threads = fp.threads if fp else as_int(device_cfg.get("threads"))
    cpu_threads = threads if accelerator != "cuda" else None  # a GPU run's host threads say nothing of it
    return Row(
        arch=sys.intern(named(record.arch or as_dict(cfg.get("arch")).get("name") or "?")),
        job=os.path.basename(os.path.dirname(path)),
        device=sys.intern(device if accelerator in (None, device, SAYS.get(device)) else f"{device} ({accelerator})"),
        host=shared(fp.host if fp else None),
        model=shared(model),
        hardware=sys.intern(hardware(model or device, cpu_threads, record.world_size)),
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
        seconds_to_97=record.training.time_to_val_acc.get("0.97") if record.training else None,
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
        repeat=record.repeat,
        status=sys.intern(record.status),
        timed=record.status == "ok" and bool(speed and speed.samples_per_sec),
        reason=record.reason,
        run_name=shared(record.run_name),
        started=record.started,
        path=path,
        scaling_group=scaling_key(record),
        curve=tuple((e.train_seconds, e.val_acc) for e in epochs if e.val_acc is not None),
    )


def steady_epoch_seconds(epochs: list[Epoch]) -> float | None:
    """The median epoch's seconds, the first (warm-up) left out where there are several."""
    steady = epochs[1:] if len(epochs) > 1 else epochs
    return statistics.median(e.seconds for e in steady) if steady else None


def hardware(model: str, threads: int | None, world_size: int) -> str:
    """'AMD EPYC 7B13, 2 thr', 'H100 80GB HBM3 x4': what a run trained on, in one short cell."""
    return model + (f", {threads} thr" if threads else "") + (f" x{world_size}" if world_size > 1 else "")


def scaling_key(record: ResultsRecord) -> str:
    """What runs that differ only in their world size share: the host and the config less its device count
    (and the CPU threads, which the ranks of one machine split between them, where the files live, which repeat).
    A digest of the values, not the text (a kilobyte a row), nor ``hash()`` (seeded per process: rows read in two
    workers would never group); the copies are shallow: only what is dropped."""
    cfg = dict(record.config)
    device = cfg["device"] = dict(as_dict(cfg.get("device")))
    data = cfg["data"] = dict(as_dict(cfg.get("data")))
    top = ("output_root", "run_name", "repeat", "repeats")
    for part, keys in ((cfg, top), (device, ("devices", "threads")), (data, ("root",))):
        for key in keys:
            part.pop(key, None)
    host = record.fingerprint.host if record.fingerprint else None
    text = json.dumps([host, cfg], sort_keys=True, default=repr)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
