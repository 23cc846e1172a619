"""The comparison's columns: one definition for the console, Markdown and CSV, and how a value is shown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple


class Column(NamedTuple):
    key: str  # the row's attribute; the CSV's header
    header: str  # the console's and Markdown's header
    spec: str | None = None  # format of a number (right-aligned); None: text
    # rank in the console's default columns (0 is the last to go when the terminal is narrow); None: shown
    # only with --columns (the CSV and the Markdown have every column)
    priority: int | None = None


# with --price/--prices only (pricing.py): without a price, nothing about cost is shown, in no file
COST_COLUMNS = [
    Column("usd_per_hour", "USD/hour", ",.2f"),  # all the run's devices
    Column("usd_per_million_samples", "USD/M samples", ".4f", priority=16),
    Column("usd_to_97", "USD to 97%", ".4f"),
    Column("usd_to_99", "USD to 99%", ".4f"),
]
# the default columns answer: how fast, how accurate, how efficient, on what, against what
RUN_COLUMNS = [
    Column("arch", "arch", priority=0),
    Column("source", "source"),  # the folder given to compare that holds the run
    Column("job", "job", priority=1),
    Column("host", "host", priority=7),
    Column("hardware", "hardware", priority=4),
    Column("device", "device"),
    Column("model", "GPU/CPU"),
    Column("threads", "threads", "d"),
    Column("precision", "precision", priority=13),
    Column("execution", "execution", priority=6),  # eager, compiled, graph, fused
    Column("world_size", "devices", "d"),
    Column("batch_size", "batch", "d"),  # per device
    Column("global_batch_size", "global batch", "d"),
    Column("epochs", "epochs", "d"),  # among the defaults where the runs differ in it (tables.with_epochs)
    Column("test_acc", "test acc", ".4f", priority=3),
    Column("train_samples_per_sec", "train samples/s", ",.0f", priority=2),
    Column("train_basis", "steady|overall"),
    Column("epoch_seconds", "epoch s", ".2f"),
    Column("seconds_to_97", "to 97% s", ".1f", priority=14),
    Column("seconds_to_98", "to 98% s", ".1f"),
    Column("seconds_to_99", "to 99% s", ".1f"),
    Column("mfu", "MFU", ".1%", priority=10),  # the datasheet peak's, else the measured peak's (marked)
    Column("mfu_of_measured_peak", "MFU of measured peak", ".1%"),
    Column("inference_samples_per_sec", "infer samples/s", ",.0f", priority=15),
    Column("latency_ms_p50", "batch-1 ms", ".3f"),
    Column("gpu_busy_percent", "GPU busy %", ".0f", priority=8),
    Column("samples_per_joule", "samples/J", ",.1f", priority=9),
    Column("energy_source", "J from"),
    Column("kwh_per_million_samples", "kWh/M samples", ".4f"),
    Column("average_watts", "watts", ".1f"),
    Column("peak_host_rss_mb", "peak RSS MB", ",.0f"),
    Column("gpu_peak_allocated_mb", "GPU peak MB", ",.0f"),
    Column("host_bound", "host-bound"),
    Column("noisy", "noisy"),  # why: the machine's other load while the run was timed
    Column("unsteady", "unsteady"),  # why: the run's own sub-windows spread
    Column("not_measured", "not measured"),  # what ~measure.NAME switched off
    Column("repeat", "repeat", "d"),
    Column("scaling_speedup", "scale-up", ".2f", priority=12),
    Column("scaling_efficiency", "scaling eff.", ".0%", priority=11),
    *COST_COLUMNS,
    Column("status", "status"),
    Column("reason", "reason"),
    Column("run_name", "run name"),
    Column("started", "started"),
    Column("path", "results.json"),
]
NOT_OK_COLUMNS = [c for c in RUN_COLUMNS if c.key in ("arch", "job", "run_name", "device", "host", "status", "reason")]
# one row per setup (network, hardware, execution, precision, batch, epochs): the median of the runs that count, its
# 95% interval, and the verdict against the baseline setup (hwbench.compare.verdicts); setups.csv has every column
SETUP_COLUMNS = [
    Column("arch", "arch", priority=0),
    Column("source", "source"),
    Column("hardware", "hardware", priority=1),
    Column("execution", "execution", priority=9),
    Column("precision", "precision", priority=12),
    Column("batch_size", "batch", "d", priority=10),
    Column("epochs", "epochs", "d"),  # among the defaults where the setups differ in it (tables.with_epochs)
    Column("runs", "runs", "d", priority=3),
    Column("median_samples_per_sec", "train samples/s", ",.0f", priority=2),
    Column("ci", "95% CI", priority=4),
    Column("ci_low", "CI low", ",.0f"),
    Column("ci_high", "CI high", ",.0f"),
    Column("iqr_over_median", "IQR/median", ".1%", priority=11),
    Column("spread", "min-max"),
    Column("speedup", "speed-up", ".2f", priority=5),
    Column("speedup_interval", "speed-up 95% CI", priority=6),
    Column("speedup_ci_low", "speed-up CI low", ".3f"),
    Column("speedup_ci_high", "speed-up CI high", ".3f"),
    Column("verdict", "verdict", priority=7),
    Column("p_value", "p (U test)", ".3f", priority=15),
    Column("baseline_setup", "baseline"),
    Column("left_out", "left out", priority=8),
    Column("test_acc", "test acc", ".4f", priority=13),
    Column("samples_per_joule", "samples/J", ",.1f", priority=14),
    Column("mfu", "MFU", ".1%", priority=16),
    Column("kwh_per_million_samples", "kWh/M samples", ".4f"),
    Column("usd_per_million_samples", "USD/M samples", ".4f", priority=17),
    Column("usd_to_97", "USD to 97%", ".4f"),
    Column("usd_to_99", "USD to 99%", ".4f"),
]
SETUP_CSV = [c.key for c in SETUP_COLUMNS if c.key not in ("ci", "speedup_interval", "spread")]  # numbers, not text
COST_KEYS = frozenset(c.key for c in COST_COLUMNS)
OVERALL_MARK = "*"  # marks a training speed over all steps: the run had no steady-state window
MEASURED_MARK = "†"  # marks an MFU against the measured matmul peak: the device has no datasheet peak
NOISY_MARK = "noisy"  # marks a training speed timed while the machine was busy
UNSTEADY_MARK = "unsteady"  # marks a training speed whose own sub-windows spread


def cell(column: Column, row: Any) -> str:
    """A value as the console and Markdown show it (the CSV keeps the raw value)."""
    value = getattr(row, column.key, None)
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
    if column.key == "train_samples_per_sec" and getattr(row, "train_basis", None) == "overall":
        text += OVERALL_MARK
    if column.key == "mfu" and getattr(row, "mfu_measured", False):
        text += MEASURED_MARK
    if column.key == "train_samples_per_sec" and getattr(row, "noisy", None):
        text += f" {NOISY_MARK}"
    elif column.key == "train_samples_per_sec" and getattr(row, "unsteady", None):
        text += f" {UNSTEADY_MARK}"
    if column.key == "gpu_busy_percent" and getattr(row, "host_bound", False):
        text += " host-bound"
    return text


def with_values(columns: Sequence[Column], rows: Sequence[Any]) -> list[Column]:
    """The columns some row has a value in: a CPU-only comparison has no MFU, busy % or samples/J column."""
    return [c for c in columns if any(getattr(r, c.key, None) is not None for r in rows)]


# what a run is, in a column each (the hardware says its threads and devices): any of these whose value differs
# between the shown rows comes first, beside the network, before every figure
DESCRIBING = ("source", "host", "hardware", "execution", "precision", "batch_size", "epochs")
HEADLINE = ("train_samples_per_sec", "median_samples_per_sec")  # with the network: the last to go
# a flag or a figure that some shown row has and that says how to read the row: ranked with the speed
FLAGS = ("noisy", "unsteady", "left_out", "scaling_speedup", "scaling_efficiency")


def by_variation(columns: Sequence[Column], rows: Sequence[Any]) -> list[Column]:
    """The columns, with the describing ones that vary among ``rows`` ranked first (with the network), and the
    flags some row has ranked beside the speed: a precision sweep shows its precisions, two folders their source,
    a noisy run its noise, whatever the terminal's width."""
    speed = min((c.priority for c in columns if c.key in HEADLINE and c.priority is not None), default=2)
    ranked = []
    for c in columns:
        values = {getattr(r, c.key, None) for r in rows}
        per_network: dict[Any, set[Any]] = {}
        for r in rows:  # rows of two networks are never compared: what differs within one network's rows
            per_network.setdefault(getattr(r, "arch", None), set()).add(getattr(r, c.key, None))
        if c.key in ("arch", *HEADLINE):
            c = c._replace(priority=-1)  # the last to go: what a row is and how fast it trained
        elif c.key in DESCRIBING and any(len(v) > 1 for v in per_network.values()):
            c = c._replace(priority=0)
        elif c.key in FLAGS and values - {None}:
            c = c._replace(priority=speed)
        ranked.append(c)
    return ranked


def by_priority(columns: Sequence[Column]) -> list[Column]:
    """The default console columns, the most needed first."""
    return sorted((c for c in columns if c.priority is not None), key=lambda c: c.priority)  # type: ignore[arg-type,return-value]


def column_keys() -> list[str]:
    """What --columns takes: the per-run columns' keys, then the per-setup table's own."""
    return list(dict.fromkeys(c.key for c in (*RUN_COLUMNS, *SETUP_COLUMNS)))


def check_columns(keys: str) -> None:
    """``--columns``: 'all', or column keys separated by commas; raises ValueError naming what is unknown."""
    wanted = [k.strip() for k in keys.split(",") if k.strip()]
    unknown = [k for k in wanted if k not in column_keys()]
    if keys != "all" and (unknown or not wanted):
        raise ValueError(f"--columns: no column {', '.join(map(repr, unknown)) or 'given'}: give 'all' or some of "
                         f"{', '.join(column_keys())}")  # fmt: skip


def pick(columns: Sequence[Column], keys: str) -> list[Column]:
    """The ``columns`` that --columns names, in the table's order ('all': every one)."""
    wanted = {k.strip() for k in keys.split(",")}
    return [c for c in columns if keys == "all" or c.key in wanted]
