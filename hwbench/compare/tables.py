"""The comparison as tables: on the console (rich, as wide as the terminal), setups.csv, compare.csv and compare.md.

The console and the Markdown lead with one row per setup (its median, interval and verdict), then list each ok run
up to ``MAX_RUN_ROWS``. setups.csv has every setup, compare.csv every run, each with every column.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from hwbench.compare.columns import (
    COST_KEYS,
    MEASURED_MARK,
    NOT_OK_COLUMNS,
    OVERALL_MARK,
    RUN_COLUMNS,
    SETUP_COLUMNS,
    SETUP_CSV,
    Column,
    by_priority,
    by_variation,
    cell,
    pick,
    with_values,
)
from hwbench.compare.rows import Row
from hwbench.compare.safe_text import csv_fixes, markdown, terminal
from hwbench.compare.setups import MIN_RUNS, Setup, epochs_words
from hwbench.compare.verdicts import NOISE_THRESHOLD, Group, sentences

MAX_RUN_ROWS = 100  # ok runs listed one by one; more are shown one row per setup
MAX_NOT_OK_ROWS = 30  # runs without a result listed one by one; more are counted by network and status
NOT_OK_TITLE = "Runs without a result (skipped, failed, interrupted, diverged, or still running)"
HOST_BOUND_NOTE = (
    "host-bound: the GPU was busy under half the time; the speed measures the host (Python, kernel launches), "
    "not the GPU"
)
NOISY_NOTE = (
    "noisy: the machine had other load while the run was timed (other processes, steal, another GPU process, "
    "throttling, a canary that ran slower or faster after training than before: the noisy column says which); "
    "never counted in a setup's figures"
)
UNSTEADY_NOTE = (
    "unsteady: the run's own speed wandered between its sub-windows (IQR/median over the threshold: the unsteady "
    "column says how much); never counted in a setup's figures"
)
LEFT_OUT_NOTE = "left out: runs of the setup that were noisy or unsteady, listed in the runs table, never aggregated"
SCALING_NOTE = (
    "scale-up: samples/s over that of the smallest run of the same setup and machine (fewest devices, then threads); "
    "scaling eff.: that over the ratio of the devices (on a CPU, of the cores the threads and ranks use)"
)
MEASURED_NOTE = (
    f"{MEASURED_MARK} MFU against the device's measured peak (a large matmul's FLOP/s at the run's settings), "
    "for want of a datasheet peak"
)
SETUP_NOTE = (
    "one row per setup (network, hardware, execution, precision, batch, epochs): the median of the runs that count "
    "(ok, quiet, steady) and its 95% bootstrap interval; every setup is in setups.csv, every run in compare.csv"
)


@dataclass
class Note:
    """A line under the table, shown only with a column it explains (none: always)."""

    text: str
    columns: tuple[str, ...] = ()


@dataclass
class View:
    """A table the console and the Markdown show: the setups (always), or each ok run (up to MAX_RUN_ROWS)."""

    title: str
    columns: list[Column]
    rows: Sequence[Any]  # Row or Setup
    notes: list[Note]
    lines: list[str] = field(default_factory=list)  # under the table, always: the verdicts in words

    def notes_for(self, shown: Sequence[Column]) -> list[str]:
        """The notes of the columns ``shown``: no caption for a column left out."""
        keys = {c.key for c in shown}
        return [n.text for n in self.notes if not n.columns or keys.intersection(n.columns)]


def setup_view(ok: list[Row], setups: list[Setup], bases: dict[Group, Setup], named: bool = False) -> View:
    """One row per setup with its interval and verdict, then the verdicts in words. ``bases``: each group's
    baseline setup (add_verdicts); ``named``: --baseline chose them."""
    epochs_differ = lengths_differ(ok)
    notes = [Note(SETUP_NOTE)]
    if bases:
        notes.append(Note(speedup_note(bases, named, epochs_differ), ("speedup", "verdict")))
    if any(s.excluded for s in setups):
        notes.append(Note(LEFT_OUT_NOTE, ("left_out",)))
    if any(s.train_basis == "overall" for s in setups):
        notes.append(Note(f"{OVERALL_MARK} overall: no steady-state window", ("median_samples_per_sec",)))
    if any(s.mfu_measured for s in setups):
        notes.append(Note(MEASURED_NOTE, ("mfu",)))
    shown = [s for s in setups if s.runs or s.excluded]
    return View("hwbench setups", with_epochs(SETUP_COLUMNS, epochs_differ), shown, notes, sentences(setups))


def run_view(ok: list[Row]) -> View | None:
    """Each ok run, up to MAX_RUN_ROWS of them (every run is in compare.csv)."""
    if not ok or len(ok) > MAX_RUN_ROWS:
        return None
    notes = []
    if any(r.scaling_speedup is not None for r in ok):
        notes.append(Note(SCALING_NOTE, ("scaling_speedup", "scaling_efficiency")))
    if any(r.train_basis == "overall" for r in ok):
        notes.append(Note(f"{OVERALL_MARK} overall: no steady-state window", ("train_samples_per_sec",)))
    if any(r.mfu_measured for r in ok):
        notes.append(Note(MEASURED_NOTE, ("mfu",)))
    if any(r.host_bound for r in ok):
        notes.append(Note(HOST_BOUND_NOTE, ("gpu_busy_percent", "host_bound")))
    if any(r.noisy for r in ok):
        notes.append(Note(NOISY_NOTE, ("train_samples_per_sec",)))
    if any(r.unsteady for r in ok):
        notes.append(Note(UNSTEADY_NOTE, ("train_samples_per_sec",)))
    if skipped := sorted({m for r in ok if r.not_measured for m in r.not_measured.split(", ")}):
        notes.append(Note(f"not measured in some runs (~measure.NAME): {', '.join(skipped)}; their figures are "
                          f"blank, never zero"))  # fmt: skip
    return View("hwbench runs", with_epochs(RUN_COLUMNS, lengths_differ(ok)), ok, notes)


def lengths_differ(rows: Sequence[Row]) -> bool:
    """Some network has runs of more than one length (their speeds come from different windows)."""
    lengths: dict[str, set[int | None]] = {}
    for r in rows:
        lengths.setdefault(r.arch, set()).add(r.epochs)
    return any(len(epochs) > 1 for epochs in lengths.values())


def with_epochs(columns: list[Column], differ: bool) -> list[Column]:
    """Where a network's runs differ in their epochs, the epochs column among the defaults, beside the speed."""
    speed = next(c.priority for c in columns if c.key in ("train_samples_per_sec", "median_samples_per_sec"))
    return [c._replace(priority=speed) if differ and c.key == "epochs" else c for c in columns]


def speedup_note(bases: dict[Group, Setup], named: bool, epochs_differ: bool) -> str:
    """What the speed-up is against, in words: each group's baseline setup."""
    against = (
        "the setup --baseline names"
        if named
        else "the baseline (a sweep of threads or devices on one machine: its smallest setup; else the slowest)"
    )
    group = "network and epochs" if epochs_differ else "network"
    setups = "; ".join(f"{arch}{f', {epochs_words(epochs)}' if epochs_differ else ''}: {s.name(['source'])}"
                       for (arch, epochs), s in bases.items())  # fmt: skip
    return (f"speed-up: the setup's median over that of {against} of the same {group} ({setups}); verdict: faster "
            f"or slower only when the whole 95% interval is beyond {NOISE_THRESHOLD:.0%}, and only with "
            f"{MIN_RUNS} runs that count on each side")  # fmt: skip


# ---- the console ----------------------------------------------------------------------------------------
def make_console() -> Console:
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 220  # a pipe or a log file has no width: don't fold the table into 80 columns
    return console


def rich_table(columns: Sequence[Column], rows: Sequence[Any], **kwargs: Any) -> Table:
    table = Table(**kwargs)
    for c in columns:  # fold, never cut: a cell too wide for the terminal goes on, on the next line
        table.add_column(c.header, justify="left" if c.spec is None else "right", overflow="fold")
    for i, row in enumerate(rows):
        if i and getattr(row, "arch", None) != getattr(rows[i - 1], "arch", None):
            table.add_section()  # a rule between networks
        table.add_row(*(Text(terminal(cell(c, row))) for c in columns))  # Text: a '[' in a name is not markup
    return table


def fitting(console: Console, view: View) -> tuple[list[Column], list[Column]]:
    """The default columns that fit the console's width, most needed first, and those left out for width; shown
    in the table's order, but the network and the fields that tell its rows apart first (``by_variation``)."""
    wanted = by_priority(by_variation(with_values(view.columns, view.rows), view.rows))
    first = [c for c in wanted if c.priority == 0 or c.key == "arch"]
    order = sorted(view.columns, key=lambda c: c.key not in {f.key for f in first})  # those first, in table order
    kept = list(wanted)
    unbounded = console.options.update_width(10**6)  # measure the width the table wants, not the one it gets
    while len(kept) > 2:
        keys = {c.key for c in kept}
        table = rich_table([c for c in order if c.key in keys], view.rows)
        if Measurement.get(console, unbounded, table).maximum <= console.width:
            break
        kept.pop()
    keys = {c.key for c in kept}
    return [c for c in order if c.key in keys], [c for c in wanted if c.key not in keys]


def print_tables(console: Console, views: Sequence[View], not_ok: list[Row], columns: str | None) -> None:
    """Each view with rows, then the runs without a result. ``columns``: --columns, 'all' (every column with a
    value) or keys; None, or keys of none of a view's columns: the default columns that fit the terminal."""
    for view in views:
        if view.rows:
            print_view(console, view, columns)
    if not_ok:
        not_ok_columns, rows = not_ok_table(not_ok)
        console.print(rich_table(not_ok_columns, rows, title=NOT_OK_TITLE, title_justify="left"))


def print_view(console: Console, view: View, columns: str | None) -> None:
    named = with_values(view.columns, view.rows) if columns == "all" else view.columns
    shown, left_out = pick(named, columns or ""), []
    if not shown:
        shown, left_out = fitting(console, view)
    notes = view.notes_for(shown)
    if left_out:
        notes.append(f"not shown for width: {', '.join(c.header for c in left_out)} "
                     f"(--columns all shows every column; the CSV files and compare.md have them)")  # fmt: skip
    caption = Text("\n".join(map(terminal, notes))) if notes else None  # a baseline's name is a record's
    console.print(rich_table(shown, view.rows, title=view.title, caption=caption, caption_justify="left"))
    for line in view.lines:  # folded at the terminal's width
        console.print(Text(terminal(line)))


@dataclass
class NotOkGroup:
    arch: str
    status: str
    runs: int
    reason: str | None  # the first run's


def not_ok_table(not_ok: list[Row]) -> tuple[list[Column], Sequence[Any]]:
    """Each run without a result, or at scale their counts by network and status, with one reason."""
    if len(not_ok) <= MAX_NOT_OK_ROWS:
        return NOT_OK_COLUMNS, not_ok
    groups: dict[tuple[str, str], NotOkGroup] = {}
    for r in not_ok:
        groups.setdefault((r.arch, r.status), NotOkGroup(r.arch, r.status, 0, r.reason)).runs += 1
    columns = [Column("arch", "arch"), Column("status", "status"), Column("runs", "runs", "d"),
               Column("reason", "reason (the first run's)")]  # fmt: skip
    return columns, list(groups.values())


# ---- the files ------------------------------------------------------------------------------------------
def write_csv(path: Path, rows: Sequence[Any], keys: Sequence[str] = tuple(c.key for c in RUN_COLUMNS),
              priced: bool = False) -> None:  # fmt: skip
    """Every row (runs, or setups), full precision; a missing value is an empty field; text made safe for a
    spreadsheet. The cost columns only where some run is ``priced``."""
    keys = [k for k in keys if priced or k not in COST_KEYS]
    values = attrgetter(*keys)
    numeric = {c.key for c in (*RUN_COLUMNS, *SETUP_COLUMNS) if c.spec is not None}
    texts = [(i, key) for i, key in enumerate(keys) if key not in numeric]
    fixes = {i: fix for i, key in texts if (fix := csv_fixes(map(attrgetter(key), rows)))}
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        if not fixes:  # as almost always: the rows as they are
            writer.writerows(map(values, rows))
        for row in rows if fixes else ():
            cells = list(values(row))
            for i, fix in fixes.items():
                cells[i] = fix.get(cells[i], cells[i])
            writer.writerow(cells)


def write_setups_csv(path: Path, setups: Sequence[Setup], priced: bool = False) -> None:
    write_csv(path, setups, SETUP_CSV, priced)


def markdown_table(columns: list[Column], rows: Sequence[Any]) -> str:
    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(map(markdown, cells)) + " |"

    rule = line("---" if c.spec is None else "---:" for c in columns)  # numbers right-aligned
    return "\n".join([line(c.header for c in columns), rule, *(line(cell(c, r) for c in columns) for r in rows)])


def write_markdown(path: Path, views: Sequence[View], not_ok: list[Row], sources: list[Path], plots: list[str]) -> None:
    """The setups and their verdicts first, then the runs: every column that has a value, the notes, the plots."""
    parts = [f"# hwbench results\n\nFrom {', '.join(map(markdown, sources))}, {datetime.now():%Y-%m-%d %H:%M}.\n"]
    for view in views:
        if not view.rows:
            continue
        columns = with_values(view.columns, view.rows)
        parts.append(f"## {view.title.removeprefix('hwbench ').capitalize()}\n\n{markdown_table(columns, view.rows)}\n")
        parts.extend(f"- {markdown(line)}" for line in view.lines)
        parts.extend(markdown(f"{note[0].upper()}{note[1:]}.") for note in view.notes_for(columns))
    parts.extend(f"\n![{name.removesuffix('.png').replace('_', ' ')}]({name})" for name in plots)
    if not_ok:
        columns, rows = not_ok_table(not_ok)
        parts.append(f"\n## {NOT_OK_TITLE}\n\n" + markdown_table(columns, rows) + "\n")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
