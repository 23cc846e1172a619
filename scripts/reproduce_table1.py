#!/usr/bin/env python
"""Rerun Table I of Arora & Bhatia with ``experiment=paper`` and put our accuracy beside theirs.

Each (arch, epochs) row is trained with several seeds; the table gives the median test accuracy and
the min-max over seeds, the median training time, and the device. It writes table1.md, table1.json
and table1.png (ours against the paper) into --out.

    python scripts/reproduce_table1.py                      # 2 arches x {5, 20} epochs x 3 seeds
    python scripts/reproduce_table1.py device=cpu --arch ffnn --seeds 0 --out /tmp/t1

On 2 CPU cores the FFNN rows take minutes and the CNN rows about an hour (the CNN trains ~1,300
images/s there); on a GPU the whole table takes minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from matplotlib.figure import Figure

from hwbench.errors import Interrupted
from hwbench.job.config import compose_config
from hwbench.job.console.quiet import extras
from hwbench.job.runner import run
from hwbench.launch.signals import signals_raise_interrupted
from hwbench.record.results import ResultsRecord

PAPER = {("ffnn", 5): 0.90, ("cnn", 5): 0.9563, ("ffnn", 20): 0.9376, ("cnn", 20): 0.9920}  # Table I
# seconds per epoch of experiment=paper (55,000 images at batch 32) on the 2-core AMD EPYC VM of docs/performance.md,
# and each run's setup and test: the estimate before this machine has timed a run of its own
REFERENCE_EPOCH_SECONDS = {"ffnn": 4.0, "cnn": 45.0}
RUN_OVERHEAD_SECONDS = 10.0
TRAIN_SIZE = 55_000


def train(arch: str, epochs: int, seed: int, overrides: list[str]) -> ResultsRecord:
    cfg = compose_config(["experiment=paper", f"arch={arch}", f"epochs={epochs}", f"seed={seed}", *overrides])
    with tempfile.TemporaryDirectory() as out:
        record = run(cfg, Path(out))
    if record.status != "ok":  # the rows finished so far are already written
        raise SystemExit(f"error: {arch} epochs={epochs} seed={seed}: {record.status}: {record.reason}")
    print(f"{arch} epochs={epochs} seed={seed}: test acc {record.metrics.test_acc:.4f}", flush=True)
    return record


def plan_seconds(plan: list[tuple[str, int, int]], overrides: list[str], per_epoch: dict[str, float]) -> float:
    """The seconds ``plan`` should take at ``per_epoch`` (per arch, at the full training split)."""
    limit = next((int(o.split("=", 1)[1]) for o in overrides if o.startswith("data.train_limit=")), TRAIN_SIZE)
    share = min(limit, TRAIN_SIZE) / TRAIN_SIZE
    return sum(epochs * per_epoch.get(arch, max(per_epoch.values())) * share + RUN_OVERHEAD_SECONDS
               for arch, epochs, _ in plan)  # fmt: skip


def duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min" if seconds >= 90 else "1 min"


def say_plan(plan: list[tuple[str, int, int]], args: argparse.Namespace) -> None:
    """What will be trained, and about how long it takes on the reference machine, before anything trains."""
    runs = f"{len(plan)} run{'s' * (len(plan) != 1)}"
    seeds = ", ".join(map(str, args.seeds))
    what = f"{', '.join(args.arch)} x {', '.join(map(str, args.epochs))} epochs x seeds {seeds}"
    print(f"plan: {runs} ({what}), experiment=paper {' '.join(args.overrides)}".rstrip(), flush=True)
    estimate = duration(plan_seconds(plan, args.overrides, REFERENCE_EPOCH_SECONDS))
    print(f"estimate: about {estimate} on a 2-core AMD EPYC (docs/performance.md); less with more cores, minutes on "
          f"a GPU; each row is written to {args.out}/table1.md as it finishes", flush=True)  # fmt: skip


def row(arch: str, epochs: int, records: list[ResultsRecord]) -> dict:
    accs = [r.metrics.test_acc for r in records]
    return {
        "arch": arch,
        "epochs": epochs,
        "paper": PAPER.get((arch, epochs)),  # None for epochs the paper did not report
        "ours_median": statistics.median(accs),
        "ours_min": min(accs),
        "ours_max": max(accs),
        "seeds": [r.config["seed"] for r in records],
        "accs": accs,
        "train_seconds_median": statistics.median(r.training.seconds for r in records),
        "device": records[0].device_label,
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| arch | epochs | paper | ours: median (min-max) | training time | device |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r['epochs']} | {'-' if r['paper'] is None else format(r['paper'], '.2%')} "
            f"| {r['ours_median']:.2%} "
            f"({r['ours_min']:.2%}-{r['ours_max']:.2%}, {len(r['seeds'])} seeds) "
            f"| {r['train_seconds_median']:.0f} s | {r['device']} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    labels = [f"{r['arch']}\n{r['epochs']} epochs" for r in rows]
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [100 * (r["paper"] or 0) for r in rows], 0.4, label="paper (Table I)")
    ours = [100 * r["ours_median"] for r in rows]
    low = [o - 100 * r["ours_min"] for o, r in zip(ours, rows, strict=True)]
    high = [100 * r["ours_max"] - o for o, r in zip(ours, rows, strict=True)]
    ax.bar([x + 0.2 for x in xs], ours, 0.4, yerr=[low, high], capsize=4, label="hwbench (median, min-max)")
    ax.set_xticks(list(xs), labels)
    ax.set_ylim(min(85, min(ours) - 2), 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Arora & Bhatia, Table I: theirs vs ours")
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=120)


def write(rows: list[dict], out: Path) -> None:
    (out / "table1.md").write_text(markdown(rows))
    (out / "table1.json").write_text(json.dumps(rows, indent=2))
    plot(rows, out / "table1.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["ffnn", "cnn"])
    parser.add_argument("--epochs", nargs="+", type=int, default=[5, 20])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("outputs/table1"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. device=cpu")
    args = parser.parse_args()
    extras()

    # Each row is written as soon as its seeds finish, so a stopped run keeps what it measured; rows of
    # an earlier table1.json in --out that this run does not redo are kept, so rows can be run one at a time.
    args.out.mkdir(parents=True, exist_ok=True)
    previous = args.out / "table1.json"
    rows = json.loads(previous.read_text()) if previous.exists() else []
    plan = [(arch, epochs, seed) for arch in args.arch for epochs in args.epochs for seed in args.seeds]
    say_plan(plan, args)
    try:
        with signals_raise_interrupted():
            rows = train_all(plan, rows, args)
    except (Interrupted, KeyboardInterrupt) as err:  # Ctrl-C, SIGTERM: one line; the rows finished are written
        signum = err.signum if isinstance(err, Interrupted) else 2
        table = args.out / "table1.md"
        kept = f"the rows finished so far are in {table}" if table.exists() else "no row had finished"
        print(f"error: stopped ({'interrupted by SIGINT' if signum == 2 else err}): {kept}", file=sys.stderr)
        sys.exit(128 + signum)
    print(markdown(rows))
    print(f"wrote {args.out}/table1.md, table1.json, table1.png")


def train_all(plan: list[tuple[str, int, int]], rows: list[dict], args: argparse.Namespace) -> list[dict]:
    """Every (arch, epochs) row of ``plan``, each written as its seeds finish; after each run, the time left at
    this machine's pace (its runs so far against the reference's)."""
    done: list[tuple[str, int, int]] = []
    started, rows = time.monotonic(), list(rows)
    for arch in args.arch:
        for epochs in args.epochs:
            records = []
            for seed in args.seeds:
                records.append(train(arch, epochs, seed, args.overrides))
                done.append((arch, epochs, seed))
                pace = (time.monotonic() - started) / plan_seconds(done, args.overrides, REFERENCE_EPOCH_SECONDS)
                left = [p for p in plan if p not in done]
                if left:
                    left_seconds = pace * plan_seconds(left, args.overrides, REFERENCE_EPOCH_SECONDS)
                    print(f"{len(done)}/{len(plan)} runs done; about {duration(left_seconds)} left", flush=True)
            rows = sorted(
                [r for r in rows if (r["arch"], r["epochs"]) != (arch, epochs)] + [row(arch, epochs, records)],
                key=lambda r: (r["epochs"], r["arch"] != "ffnn", r["arch"]),
            )
            write(rows, args.out)
    return rows


if __name__ == "__main__":
    main()
