"""One compact row per results record, with speed-ups against a baseline and scaling with devices.

A row keeps what the tables and plots show, never the record itself: 50,000 records fit in memory as rows,
not as records with their epoch tables. Records may come from several machines (sweep folders copied together).
"""

from __future__ import annotations

import functools
import marshal
import os
import re
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

from hwbench.record.results import ResultsRecord

Curve = tuple[tuple[float, float], ...]  # (cumulative training seconds, validation accuracy) per epoch


@dataclass(slots=True)
class Row:
    """One run as the comparison shows it; anything a skipped or failed record lacks stays None."""

    arch: str
    job: str  # the job's folder name: tells apart the jobs of one sweep
    device: str  # the device config's name, and what it resolved to where that says more: 'auto (cuda)'
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
    mfu: float | None
    inference_samples_per_sec: float | None
    latency_ms_p50: float | None
    gpu_busy_percent: float | None
    samples_per_joule: float | None
    energy_source: str | None
    average_watts: float | None
    peak_host_rss_mb: float | None
    gpu_peak_allocated_mb: float | None
    host_bound: bool
    noisy: str | None  # why the machine was not quiet while the run was timed: never a baseline
    status: str
    timed: bool  # an ok run with a training speed: the rows that get speed-ups and plots
    reason: str | None
    run_name: str | None
    started: str | None
    path: str
    scaling_group: int  # equal for runs that differ only in their device count
    curve: Curve  # for the accuracy plot; not a column
    speedup: float | None = None
    scaling_speedup: float | None = None  # samples/s at N devices over samples/s at 1, same setup
    scaling_efficiency: float | None = None  # that speed-up over N

    @property
    def label(self) -> str:
        """What a user types to --baseline, and sees in the captions: host/device/run_name."""
        return f"{self.host}/{self.device}/{self.run_name}"


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


def shared(value: object) -> str | None:
    """Strings that repeat across thousands of rows (hosts, models, archs) are stored once."""
    return None if value is None else sys.intern(str(value))


def to_row(path: str, record: ResultsRecord) -> Row:
    cfg, fp, speed = record.config, record.fingerprint, record.train_speed
    inference, resources = record.inference, record.resources
    device_cfg = as_dict(cfg.get("device"))
    accelerator = fp.accelerator if fp else device_cfg.get("accelerator")
    device = str(record.device or device_cfg.get("name") or "?")
    epochs = record.training.epochs if record.training else []
    steady_epochs = epochs[1:] if len(epochs) > 1 else epochs  # the first is warm-up
    model = short_model(record.device_name) if record.device_name else None
    threads = fp.threads if fp else as_int(device_cfg.get("threads"))
    cpu_threads = threads if accelerator != "cuda" else None  # a GPU run's host threads say nothing of it
    return Row(
        arch=sys.intern(str(record.arch or as_dict(cfg.get("arch")).get("name") or "?")),
        job=os.path.basename(os.path.dirname(path)),
        device=sys.intern(device if accelerator in (None, device) else f"{device} ({accelerator})"),
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
        epoch_seconds=statistics.median(e.seconds for e in steady_epochs) if steady_epochs else None,
        seconds_to_97=record.training.time_to_val_acc.get("0.97") if record.training else None,
        mfu=speed.mfu if speed else None,
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
        status=sys.intern(record.status),
        timed=record.status == "ok" and bool(speed and speed.samples_per_sec),
        reason=record.reason,
        run_name=shared(record.run_name),
        started=record.started,
        path=path,
        scaling_group=scaling_key(record),
        curve=tuple((e.train_seconds, e.val_acc) for e in epochs if e.val_acc is not None),
    )


def hardware(model: str, threads: int | None, world_size: int) -> str:
    """'AMD EPYC 7B13, 2 thr', 'H100 80GB HBM3 x4': what a run trained on, in one short cell."""
    return model + (f", {threads} thr" if threads else "") + (f" x{world_size}" if world_size > 1 else "")


def scaling_key(record: ResultsRecord) -> int:
    """What runs that differ only in their world size share: the host and the config less its device count
    (and the CPU threads, which the ranks of one machine split between them, and where the files live).
    A hash, not the text: the text is a kilobyte a row. The keys keep the order hwbench wrote them in;
    marshal serialises them at a third of repr's cost, and the copies are shallow: only what is dropped."""
    cfg = dict(record.config)
    device = cfg["device"] = dict(as_dict(cfg.get("device")))
    data = cfg["data"] = dict(as_dict(cfg.get("data")))
    for part, keys in ((cfg, ("output_root", "run_name")), (device, ("devices", "threads")), (data, ("root",))):
        for key in keys:
            part.pop(key, None)
    host = record.fingerprint.host if record.fingerprint else None
    return hash(marshal.dumps([host, cfg]))


def timed_rows(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if r.timed]


def add_scaling(rows: list[Row]) -> list[list[Row]]:
    """Set speed-up over 1 device and scaling efficiency on ok rows whose group has a 1-device run; return
    the groups that span more than one world size (for the scaling plot), each sorted by world size."""
    groups: dict[int, list[Row]] = {}
    for r in timed_rows(rows):
        groups.setdefault(r.scaling_group, []).append(r)
    scaling = []
    for group in groups.values():
        if len({r.world_size for r in group}) < 2:
            continue
        group.sort(key=lambda r: (r.world_size, r.started or ""))
        scaling.append(group)
        ones = [r.train_samples_per_sec for r in group if r.world_size == 1]
        if not ones:
            continue
        one = statistics.median(ones)  # a repeated 1-device run: its median is the reference
        for r in group:
            r.scaling_speedup = r.train_samples_per_sec / one  # type: ignore[operator]
            r.scaling_efficiency = r.scaling_speedup / r.world_size
    return scaling


def names(row: Row, spec: str) -> bool:
    return spec in row.label or spec in row.path


def add_speedups(rows: list[Row], baseline: str | None) -> dict[str, Row]:
    """Set each ok row's speed-up against its arch's baseline row; return the baseline of each arch.

    ``baseline`` is a substring of a row's label or of its results.json path (the path tells apart jobs
    of one sweep, whose labels are the same); without one, the slowest row of each arch is the baseline.
    A noisy row (the machine was busy) is never one: an arch with only noisy rows has no speed-ups.
    Raises ValueError when it names nothing, a noisy row alone, or more than one row of an arch.
    """
    by_arch: dict[str, list[Row]] = {}
    for r in timed_rows(rows):
        by_arch.setdefault(r.arch, []).append(r)
    if baseline is not None and not any(names(r, baseline) for group in by_arch.values() for r in group):
        hint = "give part of host/device/run_name or of a results.json path"
        raise ValueError(f"--baseline {baseline!r} names no ok run: {hint}")
    if baseline is not None and not any(names(r, baseline) and not r.noisy for g in by_arch.values() for r in g):
        raise ValueError(f"--baseline {baseline!r} names only noisy runs (the machine was busy while they were "
                         f"timed): a noisy run is never a baseline")  # fmt: skip
    bases: dict[str, Row] = {}
    for arch, group in by_arch.items():
        candidates = [r for r in group if not r.noisy]
        if not candidates:
            continue
        if baseline is not None:
            matches = [r for r in candidates if names(r, baseline)]
            if len(matches) > 1:
                listed = ", ".join(f"{r.label} ({r.job})" for r in matches[:5])
                more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
                raise ValueError(f"--baseline {baseline!r} matches {len(matches)} {arch} runs: {listed}{more}")
            candidates = matches or candidates  # an arch the spec does not name falls back to its slowest
        base = bases[arch] = min(candidates, key=lambda r: r.train_samples_per_sec)  # type: ignore[arg-type,return-value]
        for r in group:
            r.speedup = r.train_samples_per_sec / base.train_samples_per_sec  # type: ignore[operator]
    return bases
