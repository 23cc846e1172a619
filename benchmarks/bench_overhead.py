#!/usr/bin/env python
"""What does hwbench cost over a hand-written PyTorch loop? Same network, data, batch size, device and execution.

Alternates, ``--repeats`` times, three runs, each in a fresh process: (a) hwbench's job (``python -m hwbench``, its
results.json read back); (b) ``peers/hand_loop.py``, the plainest loop PyTorch allows, on torch's own layers and
hwbench's batching, executed the way the config's strategy executes (eager; a compiled net; a graph per step; or,
for ``fused``, a compiled step with a fused optimizer and a group of steps per graph), with neither Lightning nor
hwbench loaded; (c) hwbench's job on ``data=synthetic`` (random tensors made on the device: real MNIST should cost
nothing over it). Steady state leaves out the first epoch in all three. Prints, as a table and one JSON line, the
median steady-state training samples/s of each, and for each pair of back-to-back runs their ratio: every pair,
the median, the spread. On a CPU the table names it (vendor, family and model, ISA).

    python benchmarks/bench_overhead.py                       # ffnn and cnn on the CPU (and the GPU if present)
    python benchmarks/bench_overhead.py --arch ffnn --device gpu --batch-size 128 1024 --repeats 5
    python benchmarks/bench_overhead.py --device gpu execution=graph    # graphed: hwbench vs the docs' recipe
    python benchmarks/bench_overhead.py --device gpu execution=fused    # fused: hwbench vs the same by hand
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import anchors  # the sibling module: hwbench's run and the anchors', each in its own process
import torch
from rich.console import Console
from rich.table import Table

from hwbench.record.fingerprint import cpu_description


def measure(arch: str, device: str, batch_size: int, args: argparse.Namespace) -> dict[str, Any]:
    """One row: the three paths alternated ``args.repeats`` times, their medians and pairs."""
    overrides = anchors.hwbench_overrides(arch, device, batch_size, args.epochs, args.overrides)
    cfg = anchors.config(overrides)
    with tempfile.TemporaryDirectory() as tmp:
        arrays = anchors.write_arrays(cfg, Path(tmp) / "mnist_train.npz")
        runs = anchors.alternate({
            "hwbench": lambda: anchors.hwbench_record(overrides).training.steady.samples_per_sec,
            "hand_loop": lambda: anchors.peer("hand_loop.py", anchors.hand_loop_args(cfg, arrays))["samples_per_sec"],
            "synthetic": lambda: anchors.hwbench_record([*overrides, "data=synthetic"]).training.steady.samples_per_sec,
        }, args.repeats)  # fmt: skip
    hw, hand, synth = runs["hwbench"], runs["hand_loop"], runs["synthetic"]
    return {
        "arch": arch, "device": device, "cpu": cpu_description(), "threads": anchors.threads(cfg),
        "batch_size": batch_size, "precision": str(cfg.device.precision), "repeats": args.repeats,
        "hwbench_samples_per_sec": statistics.median(hw), "hand_loop_samples_per_sec": statistics.median(hand),
        **anchors.pairs("ratio", hw, hand),
        "synthetic_samples_per_sec": statistics.median(synth), **anchors.pairs("mnist_vs_synthetic", hw, synth),
        "hwbench_all": hw, "hand_loop_all": hand, "synthetic_all": synth, "torch": torch.__version__,
    }  # fmt: skip


def show(rows: list[dict[str, Any]]) -> None:
    cpus = sorted({r["cpu"] for r in rows if r["device"] == "cpu"})
    on = f" on {', '.join(cpus)}" if cpus else ""
    table = Table(title=f"hwbench vs a hand-written loop{on} (median steady-state training samples/s; "
                  "ratios: median of the back-to-back pairs (min-max))")  # fmt: skip
    for column in ("arch", "device", "batch", "hwbench", "hand loop", "hwbench/hand", "hwbench synthetic",
                   "mnist/synthetic"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("arch", "device") else "right")
    for r in rows:
        speeds = [f"{r[f'{path}_samples_per_sec']:,.0f}" for path in ("hwbench", "hand_loop", "synthetic")]
        table.add_row(r["arch"], r["device"], str(r["batch_size"]), *speeds[:2], anchors.ratio_cell(r, "ratio"),
                      speeds[2], anchors.ratio_cell(r, "mnist_vs_synthetic"))  # fmt: skip
    Console(width=150).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["ffnn", "cnn"], choices=["ffnn", "cnn"])
    parser.add_argument("--device", nargs="+", default=["cpu", "gpu"] if torch.cuda.is_available() else ["cpu"])
    parser.add_argument("--batch-size", nargs="+", type=int, default=[128])
    parser.add_argument("--epochs", type=int, default=5, help="the first is warm-up; the rest are timed")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "overrides", nargs="*", help="extra Hydra overrides for both paths, e.g. device.precision=bf16-mixed"
    )
    args = parser.parse_args()
    rows = [measure(arch, device, batch_size, args) for device in args.device for arch in args.arch
            for batch_size in args.batch_size]  # fmt: skip
    show(rows)
    print(json.dumps({"bench_overhead": rows}))


if __name__ == "__main__":
    main()
