#!/usr/bin/env python
"""Time to 99% MNIST test accuracy with ``experiment=speedrun``, the median over seeds.

Each seed trains from scratch on the 60,000 training images (already on the device) and is tested once on the
10,000 test images, with no test-time augmentation. The time is the training clock (synchronized with the
device); preparing the steps (compiling, capturing CUDA graphs) happens before it and is reported apart.
Prints a table per variant and one JSON line.

    python scripts/speedrun.py device=cpu                                              # CPU: slow
    python scripts/speedrun.py device=gpu execution=fused device.precision=bf16-mixed     # GPU
    python scripts/speedrun.py --seeds 0,1,2 --variants "epochs=1" "lr=0.02" -- device=gpu execution=fused
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hwbench.job.config import compose_config
from hwbench.job.console.quiet import extras
from hwbench.job.runner import run

TARGET = 0.99


def speedrun(overrides: list[str], seeds: list[int]) -> dict[str, Any]:
    """Every seed of one recipe; a failed seed is reported and the others go on."""
    runs = []
    for seed in seeds:
        cfg = compose_config(["experiment=speedrun", *overrides, f"seed={seed}"])
        with tempfile.TemporaryDirectory() as out:
            record = run(cfg, Path(out))
        if record.status != "ok":
            runs.append({"seed": seed, "error": f"{record.status}: {record.reason}"})
            print(f"seed {seed}: {runs[-1]['error']}", flush=True)
            continue
        runs.append({
            "seed": seed,
            "test_acc": record.metrics.test_acc,
            "train_seconds": record.training.seconds,
            "prepare_seconds": record.execution.prepare_seconds,
            "execution": record.execution.kind,
            "device": record.device_label,
        })  # fmt: skip
        print(f"seed {seed}: test acc {runs[-1]['test_acc']:.4f} in {runs[-1]['train_seconds']:.3f} s", flush=True)
    done = [r for r in runs if "error" not in r]
    reached = [r for r in done if r["test_acc"] >= TARGET]
    median = statistics.median(r["train_seconds"] for r in done) if done else None
    return {
        "target": TARGET,
        "overrides": overrides,
        "seeds": len(runs),
        "reached": len(reached),
        "median_seconds": median,
        "median_seconds_to_target": median if len(reached) == len(runs) else None,  # every seed, or no time to it
        "failed": len(runs) - len(done),
        "median_test_acc": statistics.median(r["test_acc"] for r in done) if done else None,
        "min_test_acc": min(r["test_acc"] for r in done) if done else None,
        "device": done[0]["device"] if done else None,
        "runs": runs,
    }


def show(summary: dict[str, Any], console: Console) -> None:
    done = [r for r in summary["runs"] if "error" not in r]
    table = Table(title=f"speedrun to {TARGET:.0%} on {summary['device']}: {' '.join(summary['overrides'])}")
    for column in ("seed", "execution", "test acc", "train s", "prepare s"):
        table.add_column(column, justify="right")
    for r in done:
        prepare = "-" if r["prepare_seconds"] is None else f"{r['prepare_seconds']:.1f}"
        table.add_row(str(r["seed"]), r["execution"], f"{r['test_acc']:.4f}", f"{r['train_seconds']:.3f}", prepare)
    console.print(table)
    median = summary["median_seconds_to_target"]
    console.print(
        f"{summary['reached']}/{summary['seeds']} seeds reached {TARGET:.0%}; median training time "
        + ("-" if summary["median_seconds"] is None else f"{summary['median_seconds']:.3f} s")
        + ("" if median is None else f" (time to {TARGET:.0%}: every seed reached it)")
    )


def seed_list(text: str) -> list[int]:
    """``0,1,2``: one argument, so that overrides may follow it on the command line."""
    return [int(seed) for seed in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=seed_list, default=[0, 1, 2, 3, 4], help="comma-separated (default 0,1,2,3,4)")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=[""],
        metavar="OVERRIDES",
        help="recipes to compare, each a quoted list of overrides added to the common ones",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every variant, e.g. device=gpu")
    args = parser.parse_args()
    extras()
    console = Console()
    summaries = []
    for variant in args.variants:
        summaries.append(speedrun([*args.overrides, *variant.split()], args.seeds))
        show(summaries[-1], console)
    if not any(s["runs"] and s["failed"] < s["seeds"] for s in summaries):
        raise SystemExit("error: every seed failed (see the lines above)")
    print(json.dumps({"speedrun": summaries if len(summaries) > 1 else summaries[0]}))


if __name__ == "__main__":
    main()
