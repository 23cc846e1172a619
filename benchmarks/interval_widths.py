#!/usr/bin/env python
"""How many repeats? The width of compare's 95% intervals with the first 3, 5 and 10 repeats of a real sweep.

Runs ``python -m hwbench -m arch=ffnn device.threads=1,2 repeats=10 ...`` (or reads a sweep folder given with
``--sweep``), then for each N takes the runs of repeats 1..N, groups them as compare does, and prints per setup
the median, its interval's width as a share of the median, and the speed-up of 2 threads over 1 with its interval
and verdict; the CPU is named. As one line of JSON too.

    python benchmarks/interval_widths.py                     # about 6 minutes on 2 cores
    python benchmarks/interval_widths.py --sweep outputs/multiruns/<stamp> --counts 3 5 10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from hwbench.compare.reading import read_rows
from hwbench.compare.setups import group_setups
from hwbench.compare.verdicts import add_verdicts
from hwbench.record.fingerprint import cpu_description

SWEEP = ["arch=ffnn", "device=cpu", "device.threads=1,2", "epochs=4", "data.train_limit=30000"]


def run_sweep(repeats: int, root: Path, keep: Path | None) -> Path:
    out = keep or root
    cmd = [sys.executable, "-m", "hwbench", "-m", *SWEEP, f"repeats={repeats}", f"output_root={out}"]
    subprocess.run(cmd, check=True, cwd=root, stdout=subprocess.DEVNULL)
    return max((out / "multiruns").iterdir())  # the newest sweep


def widths(sweep: Path, counts: list[int]) -> list[dict]:
    rows = [r for r in read_rows([sweep], processes=1) if r.status == "ok"]
    table = []
    for n in counts:
        setups = group_setups(r for r in rows if (r.repeat or 1) <= n)
        add_verdicts(setups, None)
        for s in setups:
            entry = {"repeats": n, "setup": s.hardware, "runs": s.runs, "left_out": s.left_out,
                     "median": s.train_samples_per_sec, "ci_width": None, "speedup": s.speedup,
                     "speedup_ci": list(s.speedup_ci) if s.speedup_ci else None, "verdict": s.verdict}  # fmt: skip
            if s.interval and s.train_samples_per_sec:
                entry["ci_width"] = (s.interval.high - s.interval.low) / s.train_samples_per_sec
            table.append(entry)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, help="a sweep folder to read instead of running one")
    parser.add_argument("--counts", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--keep", type=Path, help="run the sweep under this output_root and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sweep = args.sweep or run_sweep(max(args.counts), Path(tmp), args.keep)
        table = widths(sweep, args.counts)
    print(f"CPU: {cpu_description()}")
    print("| repeats | setup | runs (left out) | median samples/s | 95% CI width | speed-up (95% CI) | verdict |")
    print("|---:|---|---:|---:|---:|---|---|")
    for e in table:
        width = f"{e['ci_width']:.1%}" if e["ci_width"] is not None else "-"
        ci = f" ({e['speedup_ci'][0]:.2f}-{e['speedup_ci'][1]:.2f})" if e["speedup_ci"] else ""
        speedup = f"{e['speedup']:.2f}x{ci}" if e["speedup"] is not None else "-"
        median = f"{e['median']:,.0f}" if e["median"] is not None else "-"
        print(
            f"| {e['repeats']} | {e['setup']} | {e['runs']} ({e['left_out'] or 0}) | {median} | {width} | "
            f"{speedup} | {e['verdict'] or '-'} |"
        )
    print(json.dumps({"interval_widths": table, "cpu": cpu_description()}))


if __name__ == "__main__":
    main()
