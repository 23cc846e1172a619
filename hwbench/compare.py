"""``hwbench compare DIR...``: one table (console, CSV, Markdown) and two plots from many results records.

Records may come from several machines (sweep folders copied together): rows are grouped by network, then
by device and host, and each row's training speed is set against a baseline row of the same network.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import statistics
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: no global state, and PNGs render with Agg on any machine
from matplotlib.ticker import EngFormatter
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hwbench.results import find_records

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
    Column("batch_size", "batch", "d"),
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
    Column("status", "status", shown=False),
    Column("reason", "reason", shown=False),
    Column("run_name", "run name", shown=False),
    Column("started", "started", shown=False),
    Column("path", "results.json", shown=False),
]
SHOWN = [c for c in COLUMNS if c.shown]
NOT_OK_COLUMNS = [c for c in COLUMNS if c.key in ("arch", "job", "run_name", "device", "host", "status", "reason")]
OVERALL_MARK = "*"  # marks a training speed over all steps: the run had no steady-state window


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
    if column.key == "speedup":
        text += "x"
    if column.key == "train_samples_per_sec" and row.get("train_basis") == "overall":
        text += OVERALL_MARK
    return text


# ---- records to rows --------------------------------------------------------------------------------------
def short_model(name: str) -> str:
    """'Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz' -> 'Intel Xeon Platinum 8480+': fits in a column."""
    for noise in (r"\((R|TM|tm)\)", r"\bCPU @ .*", r"@ .*", r"\b\d+-Core\b", r"\bProcessor\b", r"^NVIDIA\s+"):
        name = re.sub(noise, "", name)
    return " ".join(name.split())


def to_row(path: Path, record: dict[str, Any]) -> Row:
    """One table row from one record; anything a skipped or failed record lacks stays None."""
    cfg, fp = record.get("config") or {}, record.get("fingerprint") or {}
    device_cfg = cfg.get("device") or {}
    accelerator = fp.get("accelerator") or device_cfg.get("accelerator")
    device = str(record.get("device") or device_cfg.get("name") or "?")
    gpus = fp.get("gpus") or []
    on_gpu = accelerator not in (None, "cpu", "mps") and bool(gpus)  # mps: the chip is the CPU model ('Apple M2')
    model = gpus[0].get("name", "") if on_gpu else fp.get("cpu", "")
    speed = record.get("steady") or record.get("overall") or {}
    epochs = record.get("epoch_table") or []
    steady_epochs = epochs[1:] if len(epochs) > 1 else epochs  # epoch 1 carries the warm-up
    epoch_seconds = [e["seconds"] for e in steady_epochs if e.get("seconds") is not None]
    inference = record.get("inference") or {}
    return {
        "arch": record.get("arch") or (cfg.get("arch") or {}).get("name") or "?",
        "job": path.parent.name,
        # the device config's name, and what it resolved to when that says more ('auto' -> 'auto (cuda)')
        "device": device if accelerator in (None, device) else f"{device} ({accelerator})",
        "host": fp.get("host"),
        "model": short_model(model) if model else None,
        "threads": fp.get("threads") or device_cfg.get("threads"),
        "precision": fp.get("precision") or device_cfg.get("precision"),
        "batch_size": cfg.get("batch_size"),
        "epochs": record.get("epochs"),
        "test_acc": (record.get("metrics") or {}).get("test_acc"),
        "train_samples_per_sec": speed.get("samples_per_sec"),
        "train_basis": ("steady" if record.get("steady") else "overall") if speed else None,
        "epoch_seconds": statistics.median(epoch_seconds) if epoch_seconds else None,
        "seconds_to_97": (record.get("time_to_val_acc") or {}).get("0.97"),
        "mfu": speed.get("mfu"),
        "inference_samples_per_sec": inference.get("samples_per_sec"),
        "latency_ms_p50": inference.get("latency_ms_p50"),
        "speedup": None,
        "status": record.get("status"),
        "reason": record.get("reason"),
        "run_name": record.get("run_name"),
        "started": record.get("started"),
        "path": str(path),
        "epoch_table": epochs,  # for the accuracy plot; not a column
    }


def label(row: Row) -> str:
    """What a user types to --baseline, and sees in the captions: host/device/run_name."""
    return f"{row['host']}/{row['device']}/{row['run_name']}"


def add_speedups(rows: list[Row], baseline: str | None) -> dict[str, Row]:
    """Set each ok row's speed-up against its arch's baseline row; return the baseline of each arch.

    ``baseline`` is a substring of a row's label or of its results.json path (the path tells apart jobs
    of one sweep, whose labels are the same); without one, the slowest row of each arch is the baseline.
    Raises ValueError when it names nothing, or more than one row of an arch.
    """
    timed = [r for r in rows if r["status"] == "ok" and r["train_samples_per_sec"]]
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


# ---- outputs ----------------------------------------------------------------------------------------------
def baseline_note(bases: dict[str, Row]) -> str:
    return "; ".join(f"{arch}: {label(r)} ({r['job']})" for arch, r in bases.items())


def print_tables(console: Console, ok: list[Row], not_ok: list[Row], bases: dict[str, Row]) -> None:
    notes = [f"speed-up: training samples/s against {baseline_note(bases)}"] if bases else []
    if any(r["train_basis"] == "overall" for r in ok):
        notes.append(f"{OVERALL_MARK} overall: no steady-state window")
    table = Table(title="hwbench results", caption="\n".join(notes) or None, caption_justify="left")
    for c in SHOWN:
        table.add_column(c.header, justify="left" if c.spec is None else "right")
    for i, row in enumerate(ok):
        if i and row["arch"] != ok[i - 1]["arch"]:
            table.add_section()  # a rule between networks
        table.add_row(*(Text(cell(c, row)) for c in SHOWN))  # Text: a '[' in a name is not rich markup
    if ok:
        console.print(table)
    if not_ok:
        skipped = Table(title="skipped and failed runs", title_justify="left")
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
        parts.append(markdown_table(SHOWN, ok) + "\n")
        parts.append(f"Speed-up: training samples/s against {baseline_note(bases)}.")
        if any(r["train_basis"] == "overall" for r in ok):
            parts.append(f"{OVERALL_MARK} overall: the run had no steady-state window.")
        parts.append("\n![training throughput](throughput.png)\n\n![accuracy against time](accuracy_vs_time.png)\n")
    if not_ok:
        parts.append("## Skipped and failed runs\n\n" + markdown_table(NOT_OK_COLUMNS, not_ok) + "\n")
    path.write_text("\n".join(parts))


def run_labels(rows: list[Row]) -> list[str]:
    """Short, unique labels: the setup, then the job folder where setups repeat, then a count where even
    job folders repeat (the same sweep run on two days)."""
    names = [f"{r['host']}/{r['device']} {r['threads']} thr, prec {r['precision']}, bs {r['batch_size']}" for r in rows]
    names = [f"{n} [{r['job']}]" if names.count(n) > 1 else n for n, r in zip(names, rows, strict=True)]
    return [f"{n} #{names[: i + 1].count(n)}" if names.count(n) > 1 else n for i, n in enumerate(names)]


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
    rows = [r for r in ok if any(e.get("val_acc") is not None for e in r["epoch_table"])]
    if not rows:
        no_runs(ax)
        fig.savefig(path, dpi=120)
        return
    seconds: list[float] = []
    for i, (row, name) in enumerate(zip(rows, run_labels(rows), strict=True)):
        points = [(e["train_seconds"], e["val_acc"]) for e in row["epoch_table"] if e.get("val_acc") is not None]
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


# ---- command line -----------------------------------------------------------------------------------------
def make_console() -> Console:
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 220  # a pipe or a log file has no width: don't fold the table into 80 columns
    return console


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hwbench compare",
        description="Compare hwbench results: a table on the console, compare.csv, compare.md and PNG plots.",
    )
    parser.add_argument("dirs", nargs="*", type=Path, default=[Path("outputs")], metavar="DIR",
                        help="folders to search for results.json, recursively (default: outputs)")  # fmt: skip
    parser.add_argument("--baseline", metavar="SPEC",
                        help="the row each arch's speed-up is against: a substring of host/device/run_name or "
                        "of its results.json path (default: the slowest run of each arch)")  # fmt: skip
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="report folder (default: outputs/reports/<date>_<time>)")  # fmt: skip
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed usage and the error (or --help)
        return int(exit_.code or 0)

    missing = [str(d) for d in args.dirs if not d.is_dir()]
    if missing:
        print(f"error: no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    records = find_records(args.dirs)
    if not records:
        where = ", ".join(str(d) for d in args.dirs)
        print(f"error: no results.json under {where}: run python -m hwbench first", file=sys.stderr)
        return 2

    rows = sorted((to_row(p, r) for p, r in records), key=lambda r: (str(r["arch"]), r["device"], str(r["host"])))
    ok = [r for r in rows if r["status"] == "ok"]
    not_ok = [r for r in rows if r["status"] != "ok"]
    try:
        bases = add_speedups(rows, args.baseline)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    console = make_console()
    print_tables(console, ok, not_ok, bases)
    out = args.out or Path("outputs") / "reports" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / "compare.csv", rows)
        write_markdown(out / "compare.md", ok, not_ok, bases, args.dirs)
        plot_throughput(out / "throughput.png", ok)
        plot_accuracy(out / "accuracy_vs_time.png", ok)
    except OSError as err:
        print(f"error: cannot write the report to {out}: {err.strerror or err}", file=sys.stderr)
        return 2
    files = "compare.csv, compare.md, throughput.png, accuracy_vs_time.png"
    summary = f"{len(rows)} records ({len(ok)} ok, {len(not_ok)} skipped or failed); report in {out}/: {files}"
    console.print(summary, markup=False, highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
