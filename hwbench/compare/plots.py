"""The comparison as plots (matplotlib): throughput, accuracy against time, scaling with devices.

Each plot shows setups (hwbench.compare.setups), not single runs: one bar or line per network and hardware
with the spread of its runs. What a plot shows is computed first, as a few numbers per bar or line
(``*_plot``: None when there is nothing to show, and then no plot is drawn); ``*_figure`` draws them, in a
worker process if need be (drawing the text of a tall figure takes a second or two).
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib import rc_context
from matplotlib.figure import Figure  # no pyplot: no global state, and PNGs render with Agg on any machine
from matplotlib.ticker import EngFormatter

from hwbench.compare.safe_text import plot_label
from hwbench.compare.scaling import DEVICES, Series
from hwbench.compare.setups import Setup, most_runs, varying

MAX_BARS = 40  # per network: more setups than this keep those with the most runs
MAX_LINES = 20  # ten colours, two dash styles: a legend still tells them apart
MAX_SCALING_LINES = 10  # each comes with its dashed ideal
DPI = 120


@dataclass
class Bar:
    label: str
    median: float
    low: float  # the 95% interval's low end (the median itself where there are too few runs for one)
    high: float
    steady: bool  # every run has a steady-state figure
    runs: int
    noisy: bool = False  # drawn from noisy or unsteady runs only: a setup with no run that counts


@dataclass
class Panel:
    arch: str
    bars: list[Bar]
    setups: int  # of this network, shown or not


@dataclass
class Line:
    label: str
    xs: list[float]
    ys: list[float]
    lows: list[float]
    highs: list[float]
    band: bool  # several runs: a band from the lowest to the highest
    ideal: list[float] | None = None  # a scaling line's ideal at each x
    noisy: bool = False  # drawn from noisy or unsteady runs only


@dataclass
class Lines:
    lines: list[Line]
    setups: int  # with a curve, shown or not
    axis: str = ""  # a scaling plot's x: devices, threads


def fewer(title: str, shown: int, total: int) -> str:
    return title if shown == total else f"{title}\n{shown} of {total} setups shown: those with the most runs"


# ---- throughput: one bar per setup, one panel per network --------------------------------------------------
def throughput_plot(setups: Sequence[Setup]) -> list[Panel] | None:
    panels = []
    for arch in dict.fromkeys(s.arch for s in setups):
        mine = [s for s in setups if s.arch == arch and (s.rows or s.excluded)]
        shown = most_runs(mine, MAX_BARS)
        bars = [bar(s, varying(shown)) for s in shown]
        if not bars:
            continue
        panels.append(Panel(plot_label(arch), bars, len(mine)))
    return panels or None


def bar(setup: Setup, parts: list[str]) -> Bar:
    """A setup's bar: the median of its runs that count, with the runs left out named; a setup whose every run was
    noisy or unsteady gets a grey bar at their median, marked: seen, never passed for a clean figure."""
    label = setup.label(parts)
    if not setup.rows:
        speed = statistics.median(r.train_samples_per_sec for r in setup.excluded)  # type: ignore[type-var]
        steady = all(r.train_basis == "steady" for r in setup.excluded)
        name = plot_label(label, tag=f" [{setup.left_out}: not counted]")
        return Bar(name, speed, speed, speed, steady, 0, noisy=True)
    median = setup.train_samples_per_sec
    name = plot_label(label, tag=f" [+{setup.left_out} left out]" if setup.left_out else "")
    return Bar(name, median, setup.ci_low or median, setup.ci_high or median,  # type: ignore[arg-type]
               setup.train_basis == "steady", setup.runs)  # fmt: skip


def throughput_figure(panels: list[Panel]) -> Figure:
    """Horizontal bars (long labels stay readable), one panel per network (they differ by orders of magnitude):
    one bar per setup at the median training samples/s of its runs that count, the whisker its 95% interval."""
    heights = [len(p.bars) for p in panels]
    bars = [b for p in panels for b in p.bars]
    repeated = any(b.runs > 1 for b in bars)
    intervals = any(b.high > b.low for b in bars)
    fig = Figure(figsize=(10, 1.2 + 0.45 * sum(heights) + 0.9 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, panel in zip(axes, panels, strict=True):
        medians = [b.median for b in panel.bars]
        spread = [[b.median - b.low for b in panel.bars], [b.high - b.median for b in panel.bars]]
        colors = ["0.75" if b.noisy else "C0" if b.steady else "C1" for b in panel.bars]
        hatches = ["//" if b.noisy else "" for b in panel.bars]
        whiskers = spread if intervals else None  # a bar without an interval would get a bare cap at its end
        ax.barh(range(len(medians)), medians, xerr=whiskers, color=colors, hatch=hatches, capsize=3,
                error_kw={"elinewidth": 1})  # fmt: skip
        ax.set_yticks(range(len(medians)), [b.label for b in panel.bars])  # positions: equal labels stay apart
        for y, bar in enumerate(panel.bars):  # the median, beyond the whisker's end
            ax.annotate(f"{bar.median:,.0f}", (bar.high, y), xytext=(4, 0), textcoords="offset points", va="center")
        ax.invert_yaxis()  # first setup on top, as in the table
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 20k, not 20000 running into its neighbour
        ax.set_title(fewer(panel.arch, len(panel.bars), panel.setups), loc="left", fontweight="bold")
        ax.set_xlabel("training samples/s" + (", median of the runs that count" if repeated else ""))
        ax.set_xlim(0, 1.3 * max(b.high for b in panel.bars))  # room for the value labels beyond the whiskers
    keys = ["whisker: 95% bootstrap interval of the median"] if intervals else []  # only what is drawn
    keys += ["orange: a run without a steady-state window"] if any(not b.steady for b in bars) else []
    keys += ["grey, hatched: noisy or unsteady runs only, not counted"] if any(b.noisy for b in bars) else []
    fig.suptitle("\n".join(["Training throughput", "; ".join(keys)]).strip())
    return fig


# ---- accuracy against training time: one line per setup ----------------------------------------------------
def accuracy_plot(setups: Sequence[Setup]) -> Lines | None:
    curved = [s for s in setups if any(r.curve for r in (s.rows or s.excluded))]
    shown = most_runs(curved, MAX_LINES)
    parts = varying(shown)
    lines = []
    for s in shown:  # a setup whose every run was noisy or unsteady: their curve, marked (a run's time is its speed)
        runs, mark = (s.rows, "") if s.rows else (s.excluded, f" [{s.left_out}: not counted]")
        curve = median_curve([r.curve for r in runs if r.curve])
        lines.append(Line(plot_label(f"{s.arch} {s.label(parts)}", tag=mark), *curve, len(runs) > 1, noisy=not s.rows))
    return Lines(lines, len(curved)) if lines else None


def median_curve(curves: Sequence[Sequence[tuple[float, float]]]) -> tuple[list[float], ...]:
    """Per epoch, over the runs that reached it: median seconds, median, lowest and highest accuracy."""
    xs, ys, lows, highs = [], [], [], []
    for k in range(max(len(c) for c in curves)):
        points = [c[k] for c in curves if len(c) > k]
        accs = [acc for _, acc in points]
        xs.append(statistics.median(s for s, _ in points))
        ys.append(statistics.median(accs))
        lows.append(min(accs))
        highs.append(max(accs))
    return xs, ys, lows, highs


def accuracy_figure(plot: Lines) -> Figure:
    """Validation accuracy against cumulative training seconds, one line per setup: at each epoch the median
    of its runs, the band from their lowest to their highest accuracy."""
    fig = Figure(figsize=(12, 6), layout="constrained")
    ax = fig.subplots()
    for i, line in enumerate(plot.lines):
        style = ":" if line.noisy else ("-", "--")[i // 10 % 2]  # ten colours: the 11th line changes its dash
        ax.plot(line.xs, line.ys, marker="o", linestyle=style, color=f"C{i % 10}", label=line.label)
        if line.band:
            ax.fill_between(line.xs, line.lows, line.highs, color=f"C{i % 10}", alpha=0.15, linewidth=0)
    seconds = [x for line in plot.lines for x in line.xs]
    if min(seconds) > 0 and max(seconds) / min(seconds) > 100:
        ax.set_xscale("log")  # a GPU next to a CPU: linear time would squash the fast runs against the axis
    ax.axhline(0.97, color="grey", linestyle=":", linewidth=1)
    banded = any(line.band for line in plot.lines)  # only what is drawn
    ax.set_xlabel("cumulative training seconds (validation excluded)" + (", median of the runs" if banded else ""))
    ax.set_ylabel("validation accuracy")
    keys = "dotted grey: 97%" + ("; band: lowest to highest run" if banded else "")
    keys += "; dotted line: noisy or unsteady runs only, not counted" if any(line.noisy for line in plot.lines) else ""
    ax.set_title(fewer(f"Validation accuracy against training time\n({keys})", len(plot.lines), plot.setups))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the plot: never over a line
    return fig


# ---- scaling with devices or threads: one line per group of runs that differ only in their device or thread count --
def scaling_plot(groups: Sequence[Series]) -> Lines | None:
    """Median training samples/s at each device (else thread) count, with its ideal; None when no runs differ
    only in their device or thread count."""
    lines = []
    sources = len({s.rows[0].source for s in groups}) > 1  # named where they tell the lines apart
    for series in sorted(groups, key=lambda s: len(s.rows), reverse=True)[:MAX_SCALING_LINES]:
        sizes = series.sizes
        speeds = [series.speed_at(n) for n in sizes]
        first = series.rows[0]
        per = "/device" if series.axis == DEVICES else ""
        source = f"{first.source}: " if sources else ""
        name = plot_label(f"{first.arch} {source}{first.host}/{first.device}, bs {first.batch_size}{per}, "
                          f"by {series.axis}")  # fmt: skip
        lines.append(Line(name, [float(n) for n in sizes], speeds, speeds, speeds, band=False, ideal=series.ideal()))
    axes = {s.axis for s in groups}
    return Lines(lines, len(groups), axis=" or ".join(sorted(axes))) if lines else None


def scaling_figure(plot: Lines) -> Figure:
    """Training samples/s against devices or threads, one line per group, each beside its ideal: the smallest
    run's speed times the ratio of the devices (on a CPU, of the cores) used."""
    fig = Figure(figsize=(9, 6), layout="constrained")
    ax = fig.subplots()
    for i, line in enumerate(plot.lines):
        ax.plot(line.xs, line.ys, marker="o", color=f"C{i % 10}", label=line.label)
        if line.ideal:
            ax.plot(line.xs, line.ideal, linestyle="--", color=f"C{i % 10}", alpha=0.6, label=f"{line.label}: ideal")
    ax.set_xticks(sorted({x for line in plot.lines for x in line.xs}))
    ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel({"devices": "devices (world size)", "threads": "CPU threads"}.get(plot.axis, plot.axis))
    ax.set_ylabel("training samples/s, all devices (median of the runs)")
    title = (f"Scaling: throughput against {plot.axis}\n(dashed: ideal, the smallest run's speed x the devices, or "
             f"on a CPU the cores, used)")  # fmt: skip
    ax.set_title(fewer(title, len(plot.lines), plot.setups))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def save(draw: Callable[[Any], Figure], plot: Any, path: Path) -> None:
    """Draw one plot and write it as a PNG (a worker process's task), making its folder if need be.

    Glyphs unhinted: text is most of a figure's drawing time, and hinting it costs a sixth more CPU for no
    difference a reader sees at this resolution. A character the font lacks (a host named in another script)
    is drawn as a box, without matplotlib's warning and its source line on the terminal."""
    with rc_context({"text.hinting": "none"}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure = draw(plot)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=DPI)
