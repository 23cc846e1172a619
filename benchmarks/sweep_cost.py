#!/usr/bin/env python
"""What a sweep's fresh process per job costs: the same 4-job CPU sweep three ways, alternated, each in a process of
its own, its wall time from start to exit.

- ``one process``: the four jobs one after another in one Python process (hwbench.job.runner.run, as hwbench ran a
  sweep before each job had a process of its own): the floor;
- ``exec``: ``python -m hwbench -m ...`` with ``HWBENCH_JOB_START=exec``: every job a new interpreter;
- ``template``: ``python -m hwbench -m ...``: every job forked from the template process (the default on Linux).

Prints, with the CPU named, each way's median wall time and spread, the median of each sweep's ratio to the
one-process run of its round, and the median job start (``job.start_seconds``) of the sweeps' records.

    python benchmarks/sweep_cost.py                    # 3 rounds of the 4-job sweep of issue 38
    python benchmarks/sweep_cost.py --repeats 5 epochs=2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hwbench.record.fingerprint import cpu_description
from hwbench.record.results import read_record

SWEEP = ["arch=ffnn,cnn", "seed=0,1", "device=cpu", "epochs=1", "data.train_limit=2000"]
ONE_PROCESS = """
import itertools, sys
from pathlib import Path
from hwbench.job.config import compose_config
from hwbench.job.runner import run
out, *overrides = sys.argv[1:]
fixed = [o for o in overrides if "," not in o]
swept = [[f"{o.split('=')[0]}={v}" for v in o.split("=", 1)[1].split(",")] for o in overrides if "," in o]
for n, point in enumerate(itertools.product(*swept)):
    record = run(compose_config([*fixed, *point]), Path(out) / str(n))
    assert record.status == "ok", record.reason
"""


def sweep_args(extra: list[str]) -> list[str]:
    keys = {o.split("=")[0] for o in extra}
    return [o for o in SWEEP if o.split("=")[0] not in keys] + extra


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(cmd[:4])} ... exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return time.perf_counter() - start


def starts(folder: Path) -> list[float]:
    return [r.job.start_seconds for p in folder.rglob("results.json")
            if (r := read_record(p)).job and r.job.start_seconds is not None]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every sweep (e.g. epochs=2)")
    args = parser.parse_args()
    overrides = sweep_args(args.overrides)
    walls: dict[str, list[float]] = {"one process": [], "exec": [], "template": []}
    job_starts: dict[str, list[float]] = {"exec": [], "template": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = list(walls) if r % 2 == 0 else list(walls)[::-1]
            for way in order:
                out = Path(tmp) / f"{way.replace(' ', '_')}_{r}"
                env = {**os.environ, "HWBENCH_JOB_START": "exec" if way == "exec" else "template"}
                if way == "one process":
                    cmd = [sys.executable, "-c", ONE_PROCESS, str(out), *overrides]
                else:
                    cmd = [sys.executable, "-m", "hwbench", "-m", *overrides, f"hydra.sweep.dir={out}"]
                walls[way].append(timed(cmd, env))
                if way in job_starts:
                    job_starts[way] += starts(out)
    show(walls, job_starts, overrides)


def show(walls: dict[str, list[float]], job_starts: dict[str, list[float]], overrides: list[str]) -> None:
    table = Table(title=f"A 4-job sweep ({' '.join(overrides)}) on {cpu_description()}, {os.cpu_count()} cores")
    for column in ("way", "wall s (median)", "spread", "vs one process (median of rounds)", "job start s (median)"):
        table.add_column(column, justify="left" if column == "way" else "right")
    base = walls["one process"]
    summary = {}
    for way, times in walls.items():
        ratios = [t / b for t, b in zip(times, base, strict=True)]
        start = statistics.median(job_starts[way]) if job_starts.get(way) else None
        summary[way] = {"wall": times, "ratio": statistics.median(ratios), "job_start_median": start}
        table.add_row(way, f"{statistics.median(times):.1f}", f"{min(times):.1f}-{max(times):.1f}",
                      f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
                      f"{start:.2f}" if start is not None else "-")  # fmt: skip
    Console().print(table)
    print(json.dumps({"cpu": cpu_description(), "overrides": overrides, **summary}))


if __name__ == "__main__":
    main()
