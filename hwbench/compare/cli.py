"""``hwbench-compare DIR...``: a table (console, CSV, Markdown) and plots from many results records."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import importlib
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hwbench import __version__
from hwbench.commands import command
from hwbench.compare.columns import check_columns, column_keys
from hwbench.compare.pricing import add_prices, prices_named
from hwbench.compare.reading import read_rows
from hwbench.compare.report_html import Facts, write_html
from hwbench.compare.rows import Row
from hwbench.compare.safe_text import terminal
from hwbench.compare.scaling import Series, add_scaling
from hwbench.compare.setups import Setup, group_setups
from hwbench.compare.tables import (
    View,
    make_console,
    print_tables,
    run_view,
    setup_view,
    write_csv,
    write_markdown,
    write_setups_csv,
)
from hwbench.compare.verdicts import add_verdicts
from hwbench.compare.workers import workers
from hwbench.errors import Interrupted
from hwbench.launch.signals import signals_raise_interrupted

# in a report folder while compare writes it: what is left there when compare is stopped says so in one line
PARTIAL = "PARTIAL.txt"
PARTIAL_LINE = "This report is partial: hwbench-compare stopped before it had written all of it; run it again.\n"


class ReportFolderBusy(Exception):
    """Another compare is writing a report into the folder this one would write to."""

    def __init__(self, out: Path) -> None:
        super().__init__(f"another hwbench-compare is writing a report to {out} now: wait for it to finish and run "
                         f"this one again, or give this one its own --out")  # fmt: skip


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hwbench-compare",
        description="Compare hwbench results: the setups with 95%% intervals and verdicts, then the runs, on the "
        "console, in setups.csv, compare.csv, compare.md, PNG plots and report.html, all of it on one page.",
    )
    parser.add_argument("dirs", nargs="*", type=Path, default=[Path("outputs")], metavar="DIR",
                        help="folders to search for results.json, recursively (default: outputs)")  # fmt: skip
    parser.add_argument("--baseline", metavar="SPEC",
                        help="the setup each speed-up is against, among the setups of its network and epochs: a "
                        "source folder as given (laptop), or a substring of host/device/run_name or of a "
                        "results.json path of one of its runs (default: the smallest setup of a threads or devices "
                        "sweep on one machine, else the slowest; a network with one setup gets none)")  # fmt: skip
    parser.add_argument("--merge-sources", action="store_true",
                        help="group the runs of every folder by their hardware alone: folders from one "
                        "cluster's nodes (default: each folder given is a setup of its own, even where the hardware "
                        "matches)")  # fmt: skip
    parser.add_argument("--columns", metavar="KEYS",
                        help="the console's columns: 'all', or keys separated by commas (default: those that fit "
                        f"the terminal). Keys: {', '.join(column_keys())}")  # fmt: skip
    parser.add_argument("--price", action="append", metavar="SPEC=USD_PER_HOUR",
                        help="what a device costs an hour (a GPU, or a CPU run's machine), for the runs SPEC names as "
                        "--baseline does, or by part of their hardware ('H100=2.49'); repeatable, the last that names "
                        "a run wins; a run on N devices costs N times. Adds USD per million samples and to 97%%/99%% "
                        "accuracy to the report")  # fmt: skip
    parser.add_argument("--prices", type=Path, metavar="FILE",
                        help="prices from a file: YAML ('SPEC: USD_PER_HOUR' a line) or CSV (spec,usd_per_hour); "
                        "--price given too wins")  # fmt: skip
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="the folder to write the report to (compare.csv, compare.md, the plots): choose it "
                        "here; without --out each call writes a new outputs/reports/<date>_<time>/")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
    except SystemExit as exit_:  # argparse has printed usage and the error (or --help)
        return int(exit_.code or 0)
    report = Report(args.out or Path("outputs") / "reports" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}")
    stops = signals_raise_interrupted() if threading.current_thread() is threading.main_thread() else None
    try:
        with stops or contextlib.nullcontext():
            return compare(args, report, argv)
    except ValueError as err:  # a --baseline or --columns that names nothing, a bad --price
        print(terminal(f"error: {err}"), file=sys.stderr)  # it may name a record's host and run name
        return 2
    except (Interrupted, KeyboardInterrupt) as err:  # KeyboardInterrupt: off the main thread
        stopped = err if isinstance(err, Interrupted) else Interrupted(signal.SIGINT)
        print(f"error: {stopped}: {report.left()}", file=sys.stderr, flush=True)
        return 128 + stopped.signum
    except BrokenProcessPool:  # a worker killed from outside (the OOM killer), not by compare
        print("error: a worker process of compare died (out of memory?): run it again", file=sys.stderr)
        return 1


@dataclass
class Report:
    """The report's folder, and whether compare has written all of it."""

    out: Path
    written: bool = False

    def left(self) -> str:
        """What a stopped compare leaves: no report, one whose PARTIAL.txt says it is partial, or a whole one."""
        if self.written:
            return f"the report in {self.out} is complete"
        if (self.out / PARTIAL).exists():
            return f"the report in {self.out} is partial ({PARTIAL} there says so)"
        return "no report written"


def command_line(argv: list[str] | None) -> str:
    """How this report was made, as a shell would take it again."""
    return " ".join([command("hwbench-compare"), shlex.join(sys.argv[1:] if argv is None else argv)])


def compare(args: argparse.Namespace, report: Report, argv: list[str] | None = None) -> int:
    missing = [str(d) for d in args.dirs if not d.is_dir()]
    if missing:
        print(f"error: no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.columns:
        check_columns(args.columns)  # a typo is named before anything is read
    prices = prices_named(args.price, args.prices)  # so is a bad price
    # matplotlib takes a second to import: this process does that while the workers read
    rows = read_rows(args.dirs, meanwhile=lambda: importlib.import_module("hwbench.compare.plots"))
    if not rows:
        where = ", ".join(str(d) for d in args.dirs)
        print(f"error: no results.json under {where}: run {command('hwbench')} first", file=sys.stderr)
        return 2
    ok = [r for r in rows if r.status == "ok"]
    not_ok = [r for r in rows if r.status != "ok"]
    setups = group_setups(ok, by_source=not args.merge_sources)
    bases = add_verdicts(setups, args.baseline)
    scaling = add_scaling(rows, by_source=not args.merge_sources)
    for spec in add_prices(rows, prices):
        print(terminal(f"warning: --price {spec!r} names no ok run: give part of host/device/run_name, hardware or "
                       f"a results.json path"), file=sys.stderr)  # fmt: skip

    console = make_console()
    views = [setup_view(ok, setups, bases, named=args.baseline is not None), run_view(ok)]
    views = [v for v in views if v is not None]
    show = functools.partial(print_tables, console, views, not_ok, args.columns)
    out = report.out
    try:
        facts = Facts(args.dirs, command_line(argv), __version__, bases, priced=bool(prices) and any(
            r.usd_per_hour is not None for r in ok))  # fmt: skip
        plots = write_report(out, rows, views, not_ok, args.dirs, setups, scaling, meanwhile=show, facts=facts)
        report.written = True
    except OSError as err:
        print(f"error: cannot write the report to {out}: {err.strerror or err}", file=sys.stderr)
        return 2
    except ReportFolderBusy as err:
        print(terminal(f"error: {err}"), file=sys.stderr)
        return 2
    files = ", ".join(["setups.csv", "compare.csv", "compare.md", "report.html", *plots])
    records = f"{len(rows):,} record{'s' if len(rows) != 1 else ''}"
    summary = f"{records} ({len(ok):,} ok, {len(not_ok):,} without a result); report in {out}/: {files}"
    console.print(summary, markup=False, highlight=False, soft_wrap=True)
    return 0


def write_report(out: Path, rows: list[Row], views: list[View], not_ok: list[Row], sources: list[Path],
                 setups: list[Setup], scaling: list[Series], meanwhile: Callable[[], object],
                 facts: Facts | None = None) -> list[str]:  # fmt: skip
    """setups.csv, compare.csv, compare.md, the plots that have something to show and report.html (which embeds
    them); returns the plots' file names.

    The plots are drawn in workers (seconds of text layout for a tall one) while this process runs
    ``meanwhile`` (the console's tables) and writes the two tables' files."""
    from hwbench.compare import plots as p  # imported while the records were read
    from hwbench.compare import report_plots

    facts = facts or Facts(sources, command_line(None), __version__)
    drawings = {"throughput.png": (p.throughput_figure, p.throughput_plot(setups)),
                "accuracy_vs_time.png": (p.accuracy_figure, p.accuracy_plot(setups)),
                "scaling.png": (p.scaling_figure, p.scaling_plot(scaling)),
                **report_plots.drawings(setups)}  # fmt: skip
    plots = [name for name, (_, plot) in drawings.items() if plot is not None]
    out.mkdir(parents=True, exist_ok=True)
    with held(out):  # every file of the report is written while it is held
        (out / PARTIAL).write_text(PARTIAL_LINE, encoding="utf-8")  # first in, last out: its presence means partial
        with workers(len(plots)) as pool:
            drawn = [pool.submit(p.save, *drawings[name], out / name) for name in plots]
            meanwhile()
            write_setups_csv(out / "setups.csv", setups, priced=facts.priced)
            write_csv(out / "compare.csv", rows, priced=facts.priced)
            write_markdown(out / "compare.md", views, not_ok, sources, plots)
            for plot in drawn:
                plot.result()  # a worker's error, raised here
        write_html(out / "report.html", rows, setups, plots, facts)
        (out / PARTIAL).unlink(missing_ok=True)  # removed by hand meanwhile: the report is whole all the same
    return plots


@contextlib.contextmanager
def held(out: Path) -> Iterator[None]:
    """The report folder, this compare's alone while it writes there: two at once would mix or tear each other's
    files. An exclusive flock on the folder itself, taken without waiting (raises ReportFolderBusy): the kernel
    releases it however compare ends, and nothing is left in the report (filelock would need a file of its own)."""
    fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ReportFolderBusy(out) from None
        yield
    finally:
        os.close(fd)
