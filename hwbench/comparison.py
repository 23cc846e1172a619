"""The comparison as data: one row per results record, grouped by network, with speed-ups against a baseline.

Records may come from several machines (sweep folders copied together). ``hwbench.report`` renders the rows.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any, NamedTuple

from hwbench.results import ResultsRecord

Row = dict[str, Any]


# ---- columns: one definition for the console, Markdown and CSV --------------------------------------------
class Column(NamedTuple):
    key: str
    header: str  # console and Markdown header; the CSV uses the key
    spec: str | None = None  # format of a number (right-aligned); None: text
    shown: bool = True  # in the console and Markdown tables; the CSV has every column


COLUMNS = [
    Column("arch", "arch"),
    Column("job", "job"),
    Column("device", "device"),
    Column("host", "host"),
    Column("model", "GPU/CPU"),
    Column("threads", "threads", "d"),
    Column("precision", "precision"),
    Column("world_size", "devices", "d"),
    Column("batch_size", "batch", "d"),  # per device
    Column("global_batch_size", "global batch", "d", shown=False),
    Column("epochs", "epochs", "d"),
    Column("test_acc", "test acc", ".4f"),
    Column("train_samples_per_sec", "train samples/s", ",.0f"),
    Column("train_basis", "steady|overall", shown=False),
    Column("epoch_seconds", "epoch s", ".2f"),
    Column("seconds_to_97", "to 97% s", ".1f"),
    Column("mfu", "MFU", ".1%"),
    Column("inference_samples_per_sec", "infer samples/s", ",.0f"),
    Column("latency_ms_p50", "batch-1 ms", ".3f"),
    Column("speedup", "speed-up", ".2f"),
    Column("gpu_busy_percent", "GPU busy %", ".0f"),
    Column("samples_per_joule", "samples/J", ",.1f"),
    Column("energy_source", "J from", shown=False),
    Column("average_watts", "watts", shown=False),
    Column("peak_host_rss_mb", "peak RSS MB", shown=False),
    Column("gpu_peak_allocated_mb", "GPU peak MB", shown=False),
    Column("host_bound", "host-bound", shown=False),
    Column("scaling_speedup", "vs 1 device", ".2f"),  # samples/s at N over samples/s at 1, same setup
    Column("scaling_efficiency", "scaling eff.", ".0%"),  # that speed-up over N
    Column("status", "status", shown=False),
    Column("reason", "reason", shown=False),
    Column("run_name", "run name", shown=False),
    Column("started", "started", shown=False),
    Column("path", "results.json", shown=False),
]
SHOWN = [c for c in COLUMNS if c.shown]
SCALING_KEYS = ("world_size", "scaling_speedup", "scaling_efficiency")  # shown only where devices vary


ONLY_WITH_VALUES = ("gpu_busy_percent", "samples_per_joule")  # GPU and RAPL figures: most CPU rows have none


def shown_columns(rows: list[Row]) -> list[Column]:
    """The console and Markdown columns: the scaling ones only when some run used several devices, the energy
    and busy ones only when some run has them."""
    scaled = any((r.get("world_size") or 1) > 1 for r in rows)
    hidden = {k for k in ONLY_WITH_VALUES if all(r.get(k) is None for r in rows)} | (
        set() if scaled else set(SCALING_KEYS)
    )
    return [c for c in SHOWN if c.key not in hidden]


NOT_OK_COLUMNS = [c for c in COLUMNS if c.key in ("arch", "job", "run_name", "device", "host", "status", "reason")]
OVERALL_MARK = "*"  # marks a training speed over all steps: the run had no steady-state window
HOST_BOUND_NOTE = (
    "host-bound: the GPU was busy under half the time; the speed measures the host (Python, kernel launches), "
    "not the GPU"
)


def cell(column: Column, row: Row) -> str:
    """A value as the console and Markdown show it (the CSV keeps the raw value)."""
    value = row.get(column.key)
    if value is None:
        return ""
    if column.spec is None:
        return str(value)
    try:
        text = f"{value:{column.spec}}"
    except (TypeError, ValueError):  # a hand-edited record with '2' for 2: show it as it is
        return str(value)
    if column.key in ("speedup", "scaling_speedup"):
        text += "x"
    if column.key == "train_samples_per_sec" and row.get("train_basis") == "overall":
        text += OVERALL_MARK
    if column.key == "gpu_busy_percent" and row.get("host_bound"):
        text += " host-bound"
    return text


# ---- records to rows and speed-ups -------------------------------------------------------------------------
def short_model(name: str) -> str:
    """'Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz' -> 'Intel Xeon Platinum 8480+': fits in a column."""
    for noise in (r"\((R|TM|tm)\)", r"\bCPU @ .*", r"@ .*", r"\b\d+-Core\b", r"\bProcessor\b", r"^NVIDIA\s+"):
        name = re.sub(noise, "", name)
    return " ".join(name.split())


RESOURCE_KEYS = ("gpu_busy_percent", "samples_per_joule", "energy_source", "average_watts", "peak_host_rss_mb",
                 "gpu_peak_allocated_mb")  # fmt: skip


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}  # a hand-edited config may hold anything


def to_row(path: Path, record: ResultsRecord) -> Row:
    """One table row from one record; anything a skipped or failed record lacks stays None."""
    cfg, fp = record.config, record.fingerprint
    device_cfg = as_dict(cfg.get("device"))
    accelerator = fp.accelerator if fp else device_cfg.get("accelerator")
    device = str(record.device or device_cfg.get("name") or "?")
    speed = record.train_speed
    epochs = record.training.epochs if record.training else []
    steady_epochs = epochs[1:] if len(epochs) > 1 else epochs  # the first is warm-up
    epoch_seconds = [e.seconds for e in steady_epochs]
    inference = record.inference
    resources = {key: getattr(record.resources, key, None) for key in RESOURCE_KEYS}
    return {
        "arch": record.arch or as_dict(cfg.get("arch")).get("name") or "?",
        "job": path.parent.name,
        # the device config's name, and what it resolved to when that says more ('auto' -> 'auto (cuda)')
        "device": device if accelerator in (None, device) else f"{device} ({accelerator})",
        "host": fp.host if fp else None,
        "model": short_model(record.device_name) if record.device_name else None,
        "threads": fp.threads if fp else device_cfg.get("threads"),
        "precision": fp.precision if fp else device_cfg.get("precision"),
        "world_size": record.world_size,
        "batch_size": record.per_device_batch_size or cfg.get("batch_size"),
        "global_batch_size": record.global_batch_size or cfg.get("batch_size"),
        "epochs": record.epochs,
        "test_acc": record.metrics.test_acc if record.metrics else None,
        "train_samples_per_sec": speed.samples_per_sec if speed else None,
        "train_basis": record.train_basis,
        "epoch_seconds": statistics.median(epoch_seconds) if epoch_seconds else None,
        "seconds_to_97": record.training.time_to_val_acc.get("0.97") if record.training else None,
        "mfu": speed.mfu if speed else None,
        "inference_samples_per_sec": inference.samples_per_sec if inference else None,
        "latency_ms_p50": inference.latency_ms_p50 if inference else None,
        "speedup": None,
        **resources,
        "host_bound": record.host_bound,
        "scaling_speedup": None,
        "scaling_efficiency": None,
        "scaling_group": scaling_key(record),
        "status": record.status,
        "reason": record.reason,
        "run_name": record.run_name,
        "started": record.started,
        "path": str(path),
        "epoch_table": epochs,  # for the accuracy plot; not a column
    }


def scaling_key(record: ResultsRecord) -> str:
    """What runs that differ only in their world size share: the host and the config less its device count
    (and the CPU threads, which the ranks of one machine split between them, and where the files live)."""
    cfg = {k: v for k, v in record.config.items() if k not in ("output_root", "run_name")}
    device = {k: v for k, v in as_dict(cfg.get("device")).items() if k not in ("devices", "threads")}
    data = {k: v for k, v in as_dict(cfg.get("data")).items() if k != "root"}
    host = record.fingerprint.host if record.fingerprint else None
    return json.dumps([host, cfg | {"device": device, "data": data}], sort_keys=True, default=str)


def timed_rows(rows: list[Row]) -> list[Row]:
    """The rows with a training speed: ok runs only."""
    return [r for r in rows if r["status"] == "ok" and r["train_samples_per_sec"]]


def add_scaling(rows: list[Row]) -> list[list[Row]]:
    """Set speed-up over 1 device and scaling efficiency on ok rows whose group has a 1-device run; return
    the groups that span more than one world size (for the scaling plot), each sorted by world size."""
    timed = timed_rows(rows)
    groups = [
        [r for r in timed if r["scaling_group"] == key] for key in dict.fromkeys(r["scaling_group"] for r in timed)
    ]
    scaling = []
    for group in groups:
        group.sort(key=lambda r: (r["world_size"], r["started"] or ""))
        if len({r["world_size"] for r in group}) < 2:
            continue
        scaling.append(group)
        ones = [r["train_samples_per_sec"] for r in group if r["world_size"] == 1]
        if not ones:
            continue
        one = statistics.median(ones)  # a repeated 1-device run: its median is the reference
        for r in group:
            r["scaling_speedup"] = r["train_samples_per_sec"] / one
            r["scaling_efficiency"] = r["scaling_speedup"] / r["world_size"]
    return scaling


def label(row: Row) -> str:
    """What a user types to --baseline, and sees in the captions: host/device/run_name."""
    return f"{row['host']}/{row['device']}/{row['run_name']}"


def add_speedups(rows: list[Row], baseline: str | None) -> dict[str, Row]:
    """Set each ok row's speed-up against its arch's baseline row; return the baseline of each arch.

    ``baseline`` is a substring of a row's label or of its results.json path (the path tells apart jobs
    of one sweep, whose labels are the same); without one, the slowest row of each arch is the baseline.
    Raises ValueError when it names nothing, or more than one row of an arch.
    """
    timed = timed_rows(rows)
    bases: dict[str, Row] = {}
    for arch in dict.fromkeys(r["arch"] for r in timed):
        candidates = [r for r in timed if r["arch"] == arch]
        if baseline is not None:
            matches = [r for r in candidates if baseline in label(r) or baseline in r["path"]]
            if len(matches) > 1:
                names = ", ".join(f"{label(r)} ({r['job']})" for r in matches)
                raise ValueError(f"--baseline {baseline!r} matches {len(matches)} {arch} runs: {names}")
            candidates = matches or candidates  # an arch the spec does not name falls back to its slowest
        bases[arch] = min(candidates, key=lambda r: r["train_samples_per_sec"])
        for r in timed:
            if r["arch"] == arch:
                r["speedup"] = r["train_samples_per_sec"] / bases[arch]["train_samples_per_sec"]
    if baseline is not None and not any(baseline in label(r) or baseline in r["path"] for r in timed):
        hint = "give part of host/device/run_name or of a results.json path"
        raise ValueError(f"--baseline {baseline!r} names no ok run: {hint}")
    return bases


def devices(row: Row) -> str:
    return f" x{row['world_size']}" if (row.get("world_size") or 1) > 1 else ""


def run_labels(rows: list[Row]) -> list[str]:
    """Short, unique labels: the setup, then the job folder where setups repeat, then a count where even
    job folders repeat (the same sweep run on two days)."""
    names = [
        f"{r['host']}/{r['device']}{devices(r)} {r['threads']} thr, prec {r['precision']}, bs {r['batch_size']}"
        for r in rows
    ]
    names = [f"{n} [{r['job']}]" if names.count(n) > 1 else n for n, r in zip(names, rows, strict=True)]
    return [f"{n} #{names[: i + 1].count(n)}" if names.count(n) > 1 else n for i, n in enumerate(names)]
