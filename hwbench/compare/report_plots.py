"""The report's other plots (matplotlib), drawn as plots.py draws its own: what a result costs against how long it
takes, the FLOP/s each setup reached against its machine's peak, the rate over a run, the time to each accuracy.

As in plots.py, ``*_plot`` computes a few numbers per setup (None: nothing to show, no plot) and ``*_figure``
draws them, in a worker process if need be.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from hwbench.compare.plots import MAX_BARS, Line, Lines, fewer
from hwbench.compare.rows import Row
from hwbench.compare.safe_text import plot_label
from hwbench.compare.setups import Setup, median, most_runs, varying

TARGETS = (0.97, 0.98, 0.99)  # the record's time_to_val_acc (hwbench/measure/training_summary.py)
MAX_POINTS = 60  # setups in the cost scatter: its labels must stay readable
# fewer bars and lines than plots.py's: each plot is a second of drawing at scale, and these answer "which is
# fastest", not "what did every setup do" (the table and compare.csv have every setup)
MAX_TARGET_BARS = 15  # the setups fastest to 97%
MAX_RATE_LINES = 6  # per network, the setups with the most runs


def seconds_to(row: Row, target: float) -> float | None:
    return {0.97: row.seconds_to_97, 0.98: row.seconds_to_98, 0.99: row.seconds_to_99}[target]


def name(setup: Setup, parts: list[str], with_arch: bool) -> str:
    return plot_label(f"{setup.arch}: {setup.label(parts)}" if with_arch else setup.label(parts))


# ---- cost against time: one point per priced setup, the cheaper-and-faster front marked -------------------
@dataclass
class Point:
    label: str
    seconds: float
    usd: float
    front: bool = False  # no other setup is both faster and cheaper


@dataclass
class CostPanel:
    arch: str
    points: list[Point]
    what: str  # "99% validation accuracy", or "a million training samples"
    setups: int


def cost_plot(setups: Sequence[Setup]) -> list[CostPanel] | None:
    """Per network (a sample of one is not a sample of another), time against cost to the highest accuracy some
    priced setup reached (its runs' medians), else to a million training samples, which every priced one has."""
    panels = []
    for arch in dict.fromkeys(s.arch for s in setups):
        priced = [s for s in setups if s.arch == arch and any(r.usd_per_hour is not None for r in s.rows)]
        if panel := cost_panel(plot_label(arch), priced):
            panels.append(panel)
    return panels or None


def cost_panel(arch: str, priced: list[Setup]) -> CostPanel | None:
    for target in reversed(TARGETS):
        points = [(s, *tc) for s in priced if (tc := time_cost(s, target)) is not None and tc[1] is not None]
        if points:
            what = f"{target:.0%} validation accuracy"
            break
    else:
        points = [(s, 1e6 / s.train_samples_per_sec, s.usd_per_million_samples) for s in priced
                  if s.usd_per_million_samples is not None and s.train_samples_per_sec]  # fmt: skip
        what = "a million training samples"
    if not points:
        return None
    figures = {id(s): (seconds, usd) for s, seconds, usd in points}
    shown = most_runs([s for s, _, _ in points], MAX_POINTS)
    parts = varying(shown)
    marked = front([Point(plot_label(s.label(parts)), *figures[id(s)]) for s in shown])  # type: ignore[arg-type]
    return CostPanel(arch, marked, what, len(points))


def time_cost(setup: Setup, target: float) -> tuple[float, float | None] | None:
    """The median seconds to ``target`` of the runs that reached it, and the median cost of those priced."""
    times = [(t, r.usd_for(t)) for r in setup.rows if (t := seconds_to(r, target)) is not None]
    if not times:
        return None
    return statistics.median(t for t, _ in times), median(usd for _, usd in times)


def front(points: list[Point]) -> list[Point]:
    """Mark the Pareto front: the points no other point beats on both time and cost (ties count as beaten by
    neither)."""
    best = float("inf")
    for p in sorted(points, key=lambda p: (p.seconds, p.usd)):
        if p.usd < best:
            p.front, best = True, p.usd
    return points


def cost_figure(panels: list[CostPanel]) -> Figure:
    """One scatter per network: a point per setup, green and joined by a dashed line where no other setup is both
    faster and cheaper."""
    fig = Figure(figsize=(10, 1 + 4.5 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels, strict=True):
        for i, p in enumerate(panel.points):
            ax.scatter(p.seconds, p.usd, s=60 if p.front else 30, color="C2" if p.front else "C7", zorder=3)
            ax.annotate(
                p.label, (p.seconds, p.usd), xytext=(6, 4 - 12 * (i % 2)), textcoords="offset points", fontsize="small"
            )  # two points close together: their labels one above, one below
        line = sorted((p for p in panel.points if p.front), key=lambda p: p.seconds)
        ax.plot([p.seconds for p in line], [p.usd for p in line], color="C2", linestyle="--", linewidth=1)
        for values, scale in (([p.seconds for p in panel.points], ax.set_xscale),
                              ([p.usd for p in panel.points], ax.set_yscale)):  # fmt: skip
            if min(values) > 0 and max(values) / min(values) > 30:
                scale("log")  # a GPU beside a CPU
        ax.margins(0.15)
        ax.set_xlabel(f"training seconds to {panel.what} (median of the runs)")
        ax.set_ylabel(f"USD to {panel.what}")
        ax.set_title(fewer(panel.arch, len(panel.points), panel.setups), loc="left", fontweight="bold")
        ax.grid(alpha=0.3)
    fig.suptitle("What a result costs against how long it takes\n(green, dashed: the setups no other one beats on "
                 "both time and cost)")  # fmt: skip
    return fig


# ---- FLOP/s reached against the machine's peak: one bar per setup -----------------------------------------
@dataclass
class FlopsBar:
    label: str
    reached: float
    measured_peak: float | None
    datasheet_peak: float | None


@dataclass
class FlopsPlot:
    bars: list[FlopsBar]
    setups: int


def flops_plot(setups: Sequence[Setup]) -> FlopsPlot | None:
    with_flops = [s for s in setups if any(r.flops_per_sec for r in s.rows)]
    peaked = [s for s in with_flops if any(r.measured_peak_flops_per_sec or r.peak_flops_per_sec for r in s.rows)]
    shown = most_runs(peaked, MAX_BARS)
    parts, archs = varying(shown), len({s.arch for s in shown}) > 1
    bars = [FlopsBar(name(s, parts, archs), median(r.flops_per_sec for r in s.rows),  # type: ignore[arg-type]
                     median(r.measured_peak_flops_per_sec for r in s.rows),
                     median(r.peak_flops_per_sec for r in s.rows)) for s in shown]  # fmt: skip
    return FlopsPlot(bars, len(peaked)) if bars else None


def flops_figure(plot: FlopsPlot) -> Figure:
    """Horizontal bars on a log scale (a GPU's peak is a thousand times a CPU's): the measured peak in grey, the
    FLOP/s the training reached over it, the datasheet's peak a black tick where known."""
    n = len(plot.bars)
    fig = Figure(figsize=(10, 1.6 + 0.45 * n), layout="constrained")
    ax = fig.subplots()
    ys = range(n)
    peaks = [b.measured_peak or 0 for b in plot.bars]
    ax.barh(ys, peaks, color="0.85", label="measured matmul peak (this software, these settings)")
    ax.barh(ys, [b.reached for b in plot.bars], height=0.5, color="C0", label="reached by the training (median)")
    sheet = [(y, b.datasheet_peak) for y, b in zip(ys, plot.bars, strict=True) if b.datasheet_peak]
    if sheet:
        ax.scatter([v for _, v in sheet], [y for y, _ in sheet], marker="|", s=300, color="black",
                   label="datasheet dense peak", zorder=3)  # fmt: skip
    for y, b in zip(ys, plot.bars, strict=True):
        share = f" ({b.reached / b.measured_peak:.0%} of measured)" if b.measured_peak else ""
        ax.annotate(f"{b.reached / 1e9:,.1f} GFLOP/s{share}", (max(b.reached, b.measured_peak or 0), y),
                    xytext=(4, 0), textcoords="offset points", va="center", fontsize="small")  # fmt: skip
    ax.set_yticks(list(ys), [b.label for b in plot.bars])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(EngFormatter(unit="FLOP/s", sep=""))
    values = [v for b in plot.bars for v in (b.reached, b.measured_peak, b.datasheet_peak) if v]
    ax.set_xlim(min(values) / 2, max(values) * 12)  # room for the labels
    ax.set_title(fewer("How much of the hardware the training uses: FLOP/s reached against the peak", n, plot.setups))
    fig.legend(fontsize="small", loc="outside lower center", ncols=3)
    return fig


# ---- the rate over a run: each epoch's samples/s, one line per setup --------------------------------------
def rates_plot(setups: Sequence[Setup]) -> list[tuple[str, Lines]] | None:
    """Per network, each setup's training samples/s per epoch (the median of its runs, the band from the slowest
    to the fastest); only setups with two epochs or more: a slow phase needs a second window to show."""
    panels = []
    for arch in dict.fromkeys(s.arch for s in setups):
        mine = [s for s in setups if s.arch == arch and any(len(r.epoch_rates) > 1 for r in s.rows)]
        shown = most_runs(mine, MAX_RATE_LINES)
        parts = varying(shown)
        lines = [epoch_line(plot_label(s.label(parts)), [r.epoch_rates for r in s.rows if r.epoch_rates], s.runs > 1)
                 for s in shown]  # fmt: skip
        if lines:
            panels.append((plot_label(arch), Lines(lines, len(mine))))
    return panels or None


def epoch_line(label: str, rates: list[tuple[float, ...]], band: bool) -> Line:
    xs, ys, lows, highs = [], [], [], []
    for k in range(max(map(len, rates))):
        values = [r[k] for r in rates if len(r) > k]
        xs.append(float(k + 1))
        ys.append(statistics.median(values))
        lows.append(min(values))
        highs.append(max(values))
    return Line(label, xs, ys, lows, highs, band)


def rates_figure(panels: list[tuple[str, Lines]]) -> Figure:
    fig = Figure(figsize=(12, 1.5 + 3.5 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (arch, plot) in zip(axes, panels, strict=True):
        for i, line in enumerate(plot.lines):
            style = ("-", "--")[i // 10 % 2]
            ax.plot(line.xs, line.ys, marker="o", linestyle=style, color=f"C{i % 10}", label=line.label)
            if line.band:
                ax.fill_between(line.xs, line.lows, line.highs, color=f"C{i % 10}", alpha=0.15, linewidth=0)
        ax.set_xticks(sorted({x for line in plot.lines for x in line.xs}))
        ax.yaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_ylim(bottom=0)  # a dip reads as a share of the rate
        ax.set_xlabel("epoch (the first holds the warm-up)")
        ax.set_ylabel("training samples/s")
        ax.set_title(fewer(arch, len(plot.lines), plot.setups), loc="left", fontweight="bold")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    banded = any(line.band for _, plot in panels for line in plot.lines)
    fig.suptitle("The rate over a run: each epoch's training samples/s" + (
        "\n(median of the runs; band: slowest to fastest)" if banded else ""))  # fmt: skip
    return fig


# ---- time to 97, 98 and 99% validation accuracy: three bars per setup --------------------------------------
@dataclass
class TargetBars:
    label: str
    seconds: list[float | None]  # per target: the median of the runs that reached it


def accuracy_times_plot(setups: Sequence[Setup]) -> tuple[list[TargetBars], int] | None:
    """The setups fastest to 97% (the median of their runs that reached it), fastest first."""
    times = [(t, s) for s in setups if (t := median(r.seconds_to_97 for r in s.rows)) is not None]
    shown = [s for _, s in sorted(times, key=lambda ts: ts[0])[:MAX_TARGET_BARS]]
    parts, archs = varying(shown), len({s.arch for s in shown}) > 1
    bars = [TargetBars(name(s, parts, archs), [median(seconds_to(r, t) for r in s.rows) for t in TARGETS])
            for s in shown]  # fmt: skip
    return (bars, len(times)) if bars else None


def accuracy_times_figure(plot: tuple[list[TargetBars], int]) -> Figure:
    bars, total = plot
    fig = Figure(figsize=(10, 1.6 + 0.6 * len(bars)), layout="constrained")
    ax = fig.subplots()
    height = 0.8 / len(TARGETS)
    for k, target in enumerate(TARGETS):
        ys = [y + (k - 1) * height for y in range(len(bars))]
        values = [b.seconds[k] or 0.0 for b in bars]  # not reached: no bar
        ax.barh(ys, values, height=height, color=f"C{k}", label=f"{target:.0%}")
    ax.set_yticks(range(len(bars)), [b.label for b in bars])
    ax.invert_yaxis()
    ax.set_xlabel("training seconds to the validation accuracy (median of the runs that reached it; none: not reached)")
    title = "Time to 97, 98 and 99% validation accuracy"
    ax.set_title(title if len(bars) == total else f"{title}\nthe {len(bars)} fastest to 97% of {total} setups")
    ax.legend(fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    return fig


def drawings(setups: Sequence[Setup]) -> dict[str, tuple[Callable[[Any], Figure], Any]]:
    """The report's own plots by file name, each with what it shows (None: not drawn)."""
    return {"time_to_accuracy.png": (accuracy_times_figure, accuracy_times_plot(setups)),
            "flops_vs_peak.png": (flops_figure, flops_plot(setups)),
            "rate_over_run.png": (rates_figure, rates_plot(setups)),
            "cost_vs_time.png": (cost_figure, cost_plot(setups))}  # fmt: skip
