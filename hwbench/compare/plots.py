"""The comparison as plots (matplotlib): throughput, accuracy against time, scaling with devices.

Each plot shows setups (hwbench.compare.setups), not single runs: one bar or line per network and hardware
with the spread of its runs. A plot with nothing to show is not drawn (the functions return None).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from matplotlib.figure import Figure  # no pyplot: no global state, and PNGs render with Agg on any machine
from matplotlib.ticker import EngFormatter

from hwbench.compare.rows import Row
from hwbench.compare.setups import Setup, most_runs, varying

MAX_BARS = 40  # per network: more setups than this keep those with the most runs
MAX_LINES = 20  # ten colours, two dash styles: a legend still tells them apart
MAX_SCALING_LINES = 10  # each comes with its dashed ideal


def fewer(title: str, shown: int, total: int) -> str:
    return title if shown == total else f"{title} ({shown} of {total} setups: those with the most runs)"


def throughput_figure(setups: Sequence[Setup]) -> Figure | None:
    """Horizontal bars (long labels stay readable), one panel per network (they differ by orders of magnitude):
    one bar per setup at its median training samples/s, the whisker from its slowest to its fastest run."""
    archs = list(dict.fromkeys(s.arch for s in setups))
    if not archs:
        return None
    panels = {a: most_runs([s for s in setups if s.arch == a], MAX_BARS) for a in archs}
    heights = [len(p) for p in panels.values()]
    fig = Figure(figsize=(10, 1.2 + 0.45 * sum(heights) + 0.9 * len(archs)), layout="constrained")
    axes = fig.subplots(len(archs), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (arch, shown) in zip(axes, panels.items(), strict=True):
        medians = [s.train_samples_per_sec for s in shown]
        spread = [[m - min(s.speeds) for m, s in zip(medians, shown, strict=True)],
                  [max(s.speeds) - m for m, s in zip(medians, shown, strict=True)]]  # fmt: skip
        colors = ["C0" if s.train_basis == "steady" else "C1" for s in shown]
        bars = ax.barh(range(len(shown)), medians, xerr=spread, color=colors, capsize=3, error_kw={"elinewidth": 1})
        ax.set_yticks(range(len(shown)), [s.label(varying(shown)) for s in shown])  # positions: equal labels apart
        ax.bar_label(bars, [f"{m:,.0f}" for m in medians], padding=3)
        ax.invert_yaxis()  # first setup on top, as in the table
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 20k, not 20000 running into its neighbour
        total = sum(s.arch == arch for s in setups)
        ax.set_title(fewer(arch, len(shown), total), loc="left", fontweight="bold")
        ax.set_xlabel("training samples/s, median of the runs (whisker: slowest to fastest; orange: overall)")
        ax.margins(x=0.15)  # room for the value labels
    fig.suptitle("Training throughput")
    return fig


def accuracy_figure(setups: Sequence[Setup]) -> Figure | None:
    """Validation accuracy against cumulative training seconds, one line per setup: at each epoch the median
    of its runs, the band from their lowest to their highest accuracy."""
    curved = [s for s in setups if any(r.curve for r in s.rows)]
    if not curved:
        return None
    shown = most_runs(curved, MAX_LINES)
    fig = Figure(figsize=(12, 6), layout="constrained")
    ax = fig.subplots()
    seconds: list[float] = []
    for i, setup in enumerate(shown):
        xs, ys, lows, highs = median_curve([r.curve for r in setup.rows])
        style = ("-", "--")[i // 10 % 2]  # ten colours in the cycle: the 11th line changes its dash
        ax.plot(xs, ys, marker="o", linestyle=style, color=f"C{i % 10}",
                label=f"{setup.arch} {setup.label(varying(shown))}")  # fmt: skip
        if setup.runs > 1:
            ax.fill_between(xs, lows, highs, color=f"C{i % 10}", alpha=0.15, linewidth=0)
        seconds += xs
    if min(seconds) > 0 and max(seconds) / min(seconds) > 100:
        ax.set_xscale("log")  # a GPU next to a CPU: linear time would squash the fast runs against the axis
    ax.axhline(0.97, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("cumulative training seconds (validation excluded), median of the runs")
    ax.set_ylabel("validation accuracy")
    ax.set_title(fewer("Validation accuracy against training time (dotted: 97%; band: lowest to highest run)",
                       len(shown), len(curved)))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the plot: never over a line
    return fig


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


def scaling_figure(groups: Sequence[list[Row]]) -> Figure | None:
    """Training samples/s against devices, one line per setup, each beside its ideal (N x its 1-device speed).
    None when no runs differ only in their device count."""
    if not groups:
        return None
    shown = sorted(groups, key=len, reverse=True)[:MAX_SCALING_LINES]
    fig = Figure(figsize=(9, 6), layout="constrained")
    ax = fig.subplots()
    for i, group in enumerate(shown):
        sizes = sorted({r.world_size for r in group})
        speeds = [statistics.median(r.train_samples_per_sec for r in group if r.world_size == n) for n in sizes]  # type: ignore[type-var]
        first = group[0]
        name = f"{first.arch} {first.host}/{first.device}, bs {first.batch_size}/device"
        ax.plot(sizes, speeds, marker="o", color=f"C{i % 10}", label=name)
        if sizes[0] == 1:
            ax.plot(sizes, [speeds[0] * n for n in sizes], linestyle="--", color=f"C{i % 10}", alpha=0.6,
                    label=f"{name}: ideal")  # fmt: skip
    ax.set_xticks(sorted({r.world_size for g in shown for r in g}))
    ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel("devices (world size)")
    ax.set_ylabel("training samples/s, all devices (median of the runs)")
    title = "Scaling: throughput against devices (dashed: ideal, N x the 1-device speed)"
    ax.set_title(title if len(shown) == len(groups) else f"{title}\n{len(shown)} of {len(groups)} setups")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig
