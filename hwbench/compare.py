"""``hwbench-compare DIR...``: one table (console, CSV, Markdown) and two plots from many results records."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from hwbench.comparison import add_scaling, add_speedups, to_row
from hwbench.report import (
    make_console,
    plot_accuracy,
    plot_scaling,
    plot_throughput,
    print_tables,
    write_csv,
    write_markdown,
)
from hwbench.results import find_records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hwbench-compare",
        description="Compare hwbench results: a table on the console, compare.csv, compare.md and PNG plots "
        "(throughput, accuracy against time, scaling with devices).",
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

    rows = sorted(
        (to_row(p, r) for p, r in records),
        key=lambda r: (str(r["arch"]), r["device"], str(r["host"]), r["world_size"]),
    )
    ok = [r for r in rows if r["status"] == "ok"]
    not_ok = [r for r in rows if r["status"] != "ok"]
    try:
        bases = add_speedups(rows, args.baseline)
        scaling = add_scaling(rows)
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
        plot_scaling(out / "scaling.png", scaling)
    except OSError as err:
        print(f"error: cannot write the report to {out}: {err.strerror or err}", file=sys.stderr)
        return 2
    files = "compare.csv, compare.md, throughput.png, accuracy_vs_time.png, scaling.png"
    summary = f"{len(rows)} records ({len(ok)} ok, {len(not_ok)} without a result); report in {out}/: {files}"
    console.print(summary, markup=False, highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
