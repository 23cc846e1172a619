"""The comparison as tables: on the console (rich, as wide as the terminal), compare.csv and compare.md.

Up to ``MAX_RUN_ROWS`` ok runs the console and the Markdown list each run; beyond, one row per setup (the
median of its runs). The CSV always has every run and every column.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
    Column,
    by_priority,
    cell,
    pick,
    with_values,
)
from hwbench.compare.rows import Row
from hwbench.compare.safe_text import csv_fixes, markdown, terminal
from hwbench.compare.setups import Setup, epochs_words
from hwbench.compare.speedups import SpeedupGroup

MAX_RUN_ROWS = 100  # ok runs listed one by one; more are shown one row per setup
MAX_NOT_OK_ROWS = 30  # runs without a result listed one by one; more are counted by network and status
NOT_OK_TITLE = "Runs without a result (skipped, failed, interrupted, diverged, or still running)"
HOST_BOUND_NOTE = (
    "host-bound: the GPU was busy under half the time; the speed measures the host (Python, kernel launches), "
    "not the GPU"
)
NOISY_NOTE = (
    "noisy: the machine had other load while the run was timed (other processes, steal, another GPU process, "
    "throttling: the noisy column says which); never a baseline"
)
SCALING_NOTE = "vs 1 device: samples/s at N devices over samples/s at 1, same setup; scaling eff.: that over N"
MEASURED_NOTE = (
    f"{MEASURED_MARK} MFU against the device's measured peak (a large matmul's FLOP/s at the run's settings), "
    "for want of a datasheet peak"
)
SETUP_NOTE = (
    "one row per setup (network, hardware, execution, precision, batch, epochs): the median of its runs; "
    "min-max: its slowest and fastest run; every run is in compare.csv"
)


@dataclass
class Note:
    """A line under the table, shown only with a column it explains (none: always)."""

    text: str
    columns: tuple[str, ...] = ()


@dataclass
class View:
    """What the console and the Markdown show of the ok runs: each run, or each setup at scale."""

    columns: list[Column]
    rows: Sequence[Any]  # Row or Setup
    notes: list[Note]

    def notes_for(self, shown: Sequence[Column]) -> list[str]:
        """The notes of the columns ``shown``: no caption for a column left out."""
        keys = {c.key for c in shown}
        return [n.text for n in self.notes if not n.columns or keys.intersection(n.columns)]


def ok_view(ok: list[Row], bases: dict[SpeedupGroup, Row], setups: list[Setup], named: bool = False) -> View:
    """Each ok run, or at scale each setup (``setups``: the ok runs grouped). ``bases``: each group's baseline
    (add_speedups); ``named``: --baseline chose them."""
    epochs_differ = lengths_differ(ok)
    notes = [Note(speedup_note(bases, named, epochs_differ), ("speedup",))] if bases else []
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
    if len(ok) <= MAX_RUN_ROWS:
        return View(with_epochs(RUN_COLUMNS, epochs_differ), ok, notes)
    notes.insert(0, Note(f"{len(ok):,} ok runs: {SETUP_NOTE}"))
    return View(with_epochs(SETUP_COLUMNS, epochs_differ), setups, notes)


def lengths_differ(rows: Sequence[Row]) -> bool:
    """Some network has runs of more than one length (their speeds come from different windows)."""
    lengths: dict[str, set[int | None]] = {}
    for r in rows:
        lengths.setdefault(r.arch, set()).add(r.epochs)
    return any(len(epochs) > 1 for epochs in lengths.values())


def with_epochs(columns: list[Column], differ: bool) -> list[Column]:
    """Where a network's runs differ in their epochs, the epochs column among the defaults, beside the speed."""
    speed = next(c.priority for c in columns if c.key == "train_samples_per_sec")
    return [c._replace(priority=speed) if differ and c.key == "epochs" else c for c in columns]


def speedup_note(bases: dict[SpeedupGroup, Row], named: bool, epochs_differ: bool) -> str:
    """What the speed-up is against, in words: each group's baseline by its job, hardware and host."""
    against = "the run --baseline names (else the slowest)" if named else "the slowest run"
    group = "network and epochs" if epochs_differ else "network"
    runs = "; ".join(f"{arch}{f', {epochs_words(epochs)}' if epochs_differ else ''}: job {r.job}, {r.hardware}, "
                     f"host {r.host}" for (arch, epochs), r in bases.items())  # fmt: skip
    return f"speed-up: training samples/s over those of {against} of the same {group} ({runs})"


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
    """The default columns that fit the console's width, most needed first, and those left out for width."""
    wanted = by_priority(with_values(view.columns, view.rows))
    kept = list(wanted)
    unbounded = console.options.update_width(10**6)  # measure the width the table wants, not the one it gets
    while len(kept) > 2:
        table = rich_table([c for c in view.columns if c in kept], view.rows)
        if Measurement.get(console, unbounded, table).maximum <= console.width:
            break
        kept.pop()
    return [c for c in view.columns if c in kept], [c for c in wanted if c not in kept]


def print_tables(console: Console, view: View, not_ok: list[Row], columns: str | None) -> None:
    """``columns``: --columns, 'all' (every column with a value) or keys; None, or keys of none of this view's
    columns (a run's job in the per-setup table): the default columns that fit the terminal."""
    if view.rows:
        named = with_values(view.columns, view.rows) if columns == "all" else view.columns
        shown, left_out = pick(named, columns or ""), []
        if not shown:
            shown, left_out = fitting(console, view)
        notes = view.notes_for(shown)
        if left_out:
            notes.append(f"not shown for width: {', '.join(c.header for c in left_out)} "
                         f"(--columns all shows every column; compare.csv and compare.md have them)")  # fmt: skip
        caption = Text("\n".join(map(terminal, notes))) if notes else None  # the baseline's name is a record's
        console.print(rich_table(shown, view.rows, title="hwbench results", caption=caption, caption_justify="left"))
    if not_ok:
        not_ok_columns, rows = not_ok_table(not_ok)
        console.print(rich_table(not_ok_columns, rows, title=NOT_OK_TITLE, title_justify="left"))


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
def write_csv(path: Path, rows: Sequence[Row], priced: bool = False) -> None:
    """Every record, full precision; a missing value is an empty field; text made safe for a spreadsheet. The
    cost columns only where some run is ``priced``."""
    columns = [c for c in RUN_COLUMNS if priced or c.key not in COST_KEYS]
    keys = [c.key for c in columns]
    values = attrgetter(*keys)
    texts = [(i, c.key) for i, c in enumerate(columns) if c.spec is None]
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


def markdown_table(columns: list[Column], rows: Sequence[Any]) -> str:
    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(map(markdown, cells)) + " |"

    rule = line("---" if c.spec is None else "---:" for c in columns)  # numbers right-aligned
    return "\n".join([line(c.header for c in columns), rule, *(line(cell(c, r) for c in columns) for r in rows)])


def write_markdown(path: Path, view: View, not_ok: list[Row], sources: list[Path], plots: list[str]) -> None:
    """Every column that has a value, the notes, and the plots that were drawn."""
    parts = [f"# hwbench results\n\nFrom {', '.join(map(markdown, sources))}, {datetime.now():%Y-%m-%d %H:%M}.\n"]
    if view.rows:
        columns = with_values(view.columns, view.rows)
        parts.append(markdown_table(columns, view.rows) + "\n")
        parts.extend(markdown(f"{note[0].upper()}{note[1:]}.") for note in view.notes_for(columns))
        parts.extend(f"\n![{name.removesuffix('.png').replace('_', ' ')}]({name})" for name in plots)
    if not_ok:
        columns, rows = not_ok_table(not_ok)
        parts.append(f"\n## {NOT_OK_TITLE}\n\n" + markdown_table(columns, rows) + "\n")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
