#!/usr/bin/env python
"""hwbench against plain JAX on the same device: the paper's two networks, the same data and recipe.

Alternates, ``--repeats`` times, two runs, each in a fresh process: hwbench's job with the given overrides
(``python -m hwbench``, ``execution=fused`` say; its results.json read back) and ``peers/jax_loop.py``, the loop a
JAX user writes (one ``jax.jit``-compiled epoch, ``lax.scan`` over its batches; no torch, Lightning or hwbench in
its process), on the very training images hwbench trains on, handed over in an .npz file, at the same batch size.
The first epoch is warm-up (and JAX's compile) in both. Prints the median steady-state training samples/s and every
back-to-back pair's ratio with their median and spread, as a table and one JSON line (keras_peer's format); on a CPU
the table names it. Without JAX (``pip install -e '.[peers]'``) the JAX column is skipped with one line.

    python benchmarks/jax_peer.py --device gpu execution=fused     # on a GPU: hwbench's fastest mode vs XLA
    python benchmarks/jax_peer.py --device cpu --arch ffnn
"""

from __future__ import annotations

import argparse
import importlib.util
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


def jax_available() -> bool:
    return importlib.util.find_spec("jax") is not None


def measure(arch: str, args: argparse.Namespace) -> dict[str, Any]:
    """One row: hwbench and JAX alternated ``args.repeats`` times, their medians and pairs."""
    overrides = anchors.hwbench_overrides(arch, args.device, args.batch_size, args.epochs,
                                          [f"seed={args.seed}", *args.overrides])  # fmt: skip
    cfg = anchors.config(overrides)
    with tempfile.TemporaryDirectory() as tmp:
        arrays = anchors.write_arrays(cfg, Path(tmp) / "mnist_train.npz")
        paths = {"hwbench": lambda: anchors.hwbench_record(overrides).training.steady.samples_per_sec}
        if jax_available():
            paths["jax"] = lambda: anchors.peer("jax_loop.py", anchors.jax_args(cfg, arrays))
        runs = anchors.alternate(paths, args.repeats)
    hw = runs["hwbench"]
    row: dict[str, Any] = {
        "arch": arch, "device": args.device, "cpu": cpu_description(), "batch_size": args.batch_size,
        "train_images": cfg.data.train_limit or "all", "epochs": args.epochs, "repeats": args.repeats,
        "overrides": args.overrides, "hwbench_samples_per_sec": statistics.median(hw), "hwbench_all": hw,
        "torch": torch.__version__,
    }  # fmt: skip
    if peer := runs.get("jax"):
        jax_sps = [p["samples_per_sec"] for p in peer]
        row.update({
            "train_images": peer[0]["train_images"], "jax_samples_per_sec": statistics.median(jax_sps),
            "jax_all": jax_sps, **anchors.pairs("hwbench_vs_jax", hw, jax_sps), "jax": peer[0]["jax"],
            "jax_device": peer[0]["jax_device"],
        })  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["ffnn", "cnn"], choices=["ffnn", "cnn"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5, help="the first is warm-up; the rest are timed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for hwbench, e.g. execution=fused")
    args = parser.parse_args()
    if not jax_available():
        print("jax_peer: skipping the JAX column: JAX not installed (pip install -e '.[peers]')")
    rows = [measure(arch, args) for arch in args.arch]

    on = f" on {rows[0]['cpu']}" if args.device == "cpu" else ""
    table = Table(title=f"hwbench vs plain JAX on {args.device}{on} (median steady-state training samples/s; "
                  "ratio: median of the back-to-back pairs (min-max))")  # fmt: skip
    for column in ("arch", "hwbench", "JAX", "hwbench/JAX"):
        table.add_column(column, justify="left" if column == "arch" else "right")
    for r in rows:
        jax_cell = f"{r['jax_samples_per_sec']:,.0f}" if "jax_all" in r else "-"
        ratio = anchors.ratio_cell(r, "hwbench_vs_jax")
        table.add_row(r["arch"], f"{r['hwbench_samples_per_sec']:,.0f}", jax_cell, ratio)
    Console(width=150).print(table)
    print(json.dumps({"jax_peer": rows}))


if __name__ == "__main__":
    main()
