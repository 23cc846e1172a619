"""The comparison rendered: a console table (rich), compare.csv, compare.md and two PNG plots (matplotlib)."""

from __future__ import annotations

import csv
import os
import statistics
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: no global state, and PNGs render with Agg on any machine
from matplotlib.ticker import EngFormatter
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hwbench.comparison import (
    COLUMNS,
    HOST_BOUND_NOTE,
    NOT_OK_COLUMNS,
    OVERALL_MARK,
    Column,
    Row,
    cell,
    label,
    run_labels,
    shown_columns,
)

NOT_OK_TITLE = "Runs without a result (skipped, failed, interrupted, diverged, or still running)"


# ---- tables ----------------------------------------------------------------------------------------------
def baseline_note(bases: dict[str, Row]) -> str:
    return "; ".join(f"{arch}: {label(r)} ({r['job']})" for arch, r in bases.items())


SCALING_NOTE = "vs 1 device: samples/s at N devices over samples/s at 1, same setup; scaling eff.: that over N"


def print_tables(console: Console, ok: list[Row], not_ok: list[Row], bases: dict[str, Row]) -> None:
    notes = [f"speed-up: training samples/s against {baseline_note(bases)}"] if bases else []
    if any(r["scaling_speedup"] is not None for r in ok):
        notes.append(SCALING_NOTE)
    if any(r["train_basis"] == "overall" for r in ok):
        notes.append(f"{OVERALL_MARK} overall: no steady-state window")
    if any(r["host_bound"] for r in ok):
        notes.append(HOST_BOUND_NOTE)
    table = Table(title="hwbench results", caption="\n".join(notes) or None, caption_justify="left")
    shown = shown_columns(ok)
    for c in shown:
        table.add_column(c.header, justify="left" if c.spec is None else "right")
    for i, row in enumerate(ok):
        if i and row["arch"] != ok[i - 1]["arch"]:
            table.add_section()  # a rule between networks
        table.add_row(*(Text(cell(c, row)) for c in shown))  # Text: a '[' in a name is not rich markup
    if ok:
        console.print(table)
    if not_ok:
        skipped = Table(title=NOT_OK_TITLE, title_justify="left")
        for c in NOT_OK_COLUMNS:
            skipped.add_column(c.header)
        for row in not_ok:
            skipped.add_row(*(Text(cell(c, row)) for c in NOT_OK_COLUMNS))
        console.print(skipped)


def write_csv(path: Path, rows: list[Row]) -> None:
    """Every record, full precision; a missing value is an empty field."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[c.key for c in COLUMNS], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(columns: list[Column], rows: list[Row]) -> str:
    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(s.replace("|", "\\|") for s in cells) + " |"

    rule = line("---" if c.spec is None else "---:" for c in columns)  # numbers right-aligned
    return "\n".join([line(c.header for c in columns), rule, *(line(cell(c, r) for c in columns) for r in rows)])


def write_markdown(path: Path, ok: list[Row], not_ok: list[Row], bases: dict[str, Row], sources: list[Path]) -> None:
    parts = [f"# hwbench results\n\nFrom {', '.join(f'`{s}`' for s in sources)}, {datetime.now():%Y-%m-%d %H:%M}.\n"]
    if ok:
        parts.append(markdown_table(shown_columns(ok), ok) + "\n")
        parts.append(f"Speed-up: training samples/s against {baseline_note(bases)}.")
        if any(r["train_basis"] == "overall" for r in ok):
            parts.append(f"{OVERALL_MARK} overall: the run had no steady-state window.")
        if any(r["host_bound"] for r in ok):
            parts.append(HOST_BOUND_NOTE + ".")
        if any(r["scaling_speedup"] is not None for r in ok):
            parts.append(f"{SCALING_NOTE}.\n\n![scaling with devices](scaling.png)")
        parts.append("\n![training throughput](throughput.png)\n\n![accuracy against time](accuracy_vs_time.png)\n")
    if not_ok:
        parts.append(f"## {NOT_OK_TITLE}\n\n" + markdown_table(NOT_OK_COLUMNS, not_ok) + "\n")
    path.write_text("\n".join(parts))


def no_runs(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no ok runs", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def plot_throughput(path: Path, ok: list[Row]) -> None:
    """Horizontal bars (long labels stay readable), one panel per arch: archs differ by orders of magnitude."""
    timed = [r for r in ok if r["train_samples_per_sec"]]
    archs = list(dict.fromkeys(r["arch"] for r in timed)) or [""]
    heights = [max(1, sum(r["arch"] == a for r in timed)) for a in archs]
    fig = Figure(figsize=(10, 1.2 + 0.45 * sum(heights) + 0.9 * len(archs)), layout="constrained")
    axes = fig.subplots(len(archs), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, arch in zip(axes, archs, strict=True):
        rows = [r for r in timed if r["arch"] == arch]
        if not rows:
            no_runs(ax)
            continue
        values = [r["train_samples_per_sec"] for r in rows]
        colors = ["C0" if r["train_basis"] == "steady" else "C1" for r in rows]
        bars = ax.barh(range(len(rows)), values, color=colors)  # positions, not labels: equal labels stay apart
        ax.set_yticks(range(len(rows)), run_labels(rows))
        ax.bar_label(bars, [f"{v:,.0f}" for v in values], padding=3)
        ax.invert_yaxis()  # first row on top, as in the table
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 20k, not 20000 running into its neighbour
        ax.set_title(arch, loc="left", fontweight="bold")
        ax.set_xlabel("training samples/s (blue: steady state; orange: overall)")
        ax.margins(x=0.12)  # room for the value labels
    fig.suptitle("Training throughput")
    fig.savefig(path, dpi=120)


def plot_accuracy(path: Path, ok: list[Row]) -> None:
    fig = Figure(figsize=(12, 6), layout="constrained")
    ax = fig.subplots()
    rows = [r for r in ok if any(e.val_acc is not None for e in r["epoch_table"])]
    if not rows:
        no_runs(ax)
        fig.savefig(path, dpi=120)
        return
    seconds: list[float] = []
    for i, (row, name) in enumerate(zip(rows, run_labels(rows), strict=True)):
        points = [(e.train_seconds, e.val_acc) for e in row["epoch_table"] if e.val_acc is not None]
        xs, ys = zip(*points, strict=True)
        style = ("-", "--", "-.", ":")[i // 10 % 4]  # ten colours in the cycle: the 11th line changes its dash
        ax.plot(xs, ys, marker="o", linestyle=style, label=f"{row['arch']} {name}")
        seconds += xs
    if seconds and min(seconds) > 0 and max(seconds) / min(seconds) > 100:
        ax.set_xscale("log")  # a GPU next to a CPU: linear time would squash the fast runs against the axis
    ax.axhline(0.97, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("cumulative training seconds (validation excluded)")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Validation accuracy against training time (dotted: 97%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the plot: never over a line
    fig.savefig(path, dpi=120)


def plot_scaling(path: Path, groups: list[list[Row]]) -> None:
    """Training samples/s against devices, one line per setup, each beside its ideal (N x its 1-device speed)."""
    fig = Figure(figsize=(9, 6), layout="constrained")
    ax = fig.subplots()
    if not groups:
        ax.text(0.5, 0.5, "no runs that differ only in their device count", ha="center", va="center")
        ax.set_axis_off()
        fig.savefig(path, dpi=120)
        return
    for i, group in enumerate(groups):
        sizes = sorted({r["world_size"] for r in group})
        speeds = [statistics.median(r["train_samples_per_sec"] for r in group if r["world_size"] == n) for n in sizes]
        first = group[0]
        name = f"{first['arch']} {first['host']}/{first['device']}, bs {first['batch_size']}/device"
        ax.plot(sizes, speeds, marker="o", color=f"C{i % 10}", label=name)
        if sizes[0] == 1:
            ax.plot(sizes, [speeds[0] * n for n in sizes], linestyle="--", color=f"C{i % 10}", alpha=0.6,
                    label=f"{name}: ideal")  # fmt: skip
    ax.set_xticks(sorted({r["world_size"] for g in groups for r in g}))
    ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel("devices (world size)")
    ax.set_ylabel("training samples/s, all devices")
    ax.set_title("Scaling: throughput against devices (dashed: ideal, N x the 1-device speed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=120)


def make_console() -> Console:
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 220  # a pipe or a log file has no width: don't fold the table into 80 columns
    return console
