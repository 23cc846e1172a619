#!/usr/bin/env python
"""execution=fused on a CPU against eager, the plain PyTorch script, plain JAX and Keras: the paper's networks.

Alternates, ``--repeats`` times, each path in a fresh process: hwbench's job with ``execution=eager`` and with
``execution=fused`` (``python -m hwbench``, its results.json read back; a fused job that fell back to eager ends the
script in one line), ``peers/torch_loop.py`` (the stock PyTorch script), ``peers/jax_loop.py`` (one jitted epoch,
``lax.scan``; the FFNN only unless ``--jax-cnn``: XLA's CPU convolutions take minutes an epoch) and
``peers/keras_loop.py`` (Keras 3 on TensorFlow, ``model.fit``). All train the same images (the training split after
the held-out images; the CNN's first 10,000 on a CPU), the same batch, epochs and threads; the first epoch is
warm-up everywhere. Prints the CPU (vendor, family and model, ISA), each path's median steady-state training
samples/s with its spread, and fused's ratio to every other path over the back-to-back rounds (median, min-max), as
a table and one JSON line. A peer whose framework is not installed (``pip install -e '.[peers]'``) is skipped with
one line.

    python benchmarks/cpu_fused.py                                  # ffnn and cnn, 5 repeats, 5 epochs
    python benchmarks/cpu_fused.py --arch ffnn --repeats 7 device.threads=2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anchors  # the sibling module: hwbench's run and the anchors', each in its own process
import torch
from rich.console import Console
from rich.table import Table

from hwbench.record.fingerprint import cpu_description

FUSED = "hwbench fused"
PEERS = {"torch": ("torch",), "jax": ("jax",), "keras": ("tensorflow", "keras")}  # each anchor and what it needs


def installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def hwbench_path(overrides: list[str], execution: str, kernels: list[Any]) -> Callable[[], float]:
    def run() -> float:
        record = anchors.hwbench_record([*overrides, f"execution={execution}"])
        ran = record.execution.kind if record.execution else None
        if ran != execution:
            raise SystemExit(f"error: execution={execution} ran {ran}: see the job's log line (python -m hwbench "
                             f"{' '.join(overrides)} execution={execution})")  # fmt: skip
        kernels.append(record.cpu_kernels.chosen if record.cpu_kernels else None)
        return record.training.steady.samples_per_sec  # type: ignore[union-attr]

    return run


def measure(arch: str, args: argparse.Namespace, skip: set[str]) -> dict[str, Any]:
    """One row: the paths alternated ``args.repeats`` times; each one's median and spread, fused's pairs."""
    overrides = anchors.hwbench_overrides(arch, "cpu", args.batch_size, args.epochs, [f"seed={args.seed}",
                                          *args.overrides])  # fmt: skip
    cfg = anchors.config(overrides)
    kernels: list[Any] = []
    with tempfile.TemporaryDirectory() as tmp:
        arrays = anchors.write_arrays(cfg, Path(tmp) / "mnist_train.npz")
        paths: dict[str, Callable[[], float]] = {
            "hwbench eager": hwbench_path(overrides, "eager", kernels),
            FUSED: hwbench_path(overrides, "fused", kernels),
        }
        if "torch" not in skip:
            paths["torch script"] = lambda: anchors.peer("torch_loop.py", anchors.loop_args(cfg, arrays))[
                "samples_per_sec"
            ]
        if "jax" not in skip and (arch == "ffnn" or args.jax_cnn):
            paths["jax"] = lambda: anchors.peer("jax_loop.py", anchors.jax_args(cfg, arrays))["samples_per_sec"]
        if "keras" not in skip:
            paths["keras"] = lambda: anchors.peer("keras_loop.py", anchors.keras_args(cfg, arrays))["samples_per_sec"]
        runs = anchors.alternate(paths, args.repeats)
    row: dict[str, Any] = {
        "arch": arch, "cpu": cpu_description(), "threads": anchors.threads(cfg), "batch_size": args.batch_size,
        "train_images": cfg.data.train_limit or "all", "epochs": args.epochs, "repeats": args.repeats,
        "overrides": args.overrides, "torch": torch.__version__, "cpu_kernels": kernels[0] if kernels else None,
        "samples_per_sec": {name: statistics.median(v) for name, v in runs.items()}, "all": runs,
    }  # fmt: skip
    for name in runs:
        if name != FUSED:
            row |= anchors.pairs(f"fused_vs_{name.replace(' ', '_')}", runs[FUSED], runs[name])
    return row


def table(rows: list[dict[str, Any]]) -> Table:
    names = list(dict.fromkeys(name for r in rows for name in r["samples_per_sec"]))
    out = Table(
        title=f"execution=fused on {rows[0]['cpu']}, {rows[0]['threads']} threads: median steady-state "
        "training samples/s (min-max over the repeats); fused/x: median of the back-to-back pairs (min-max)"
    )
    out.add_column("arch")
    for name in names:
        out.add_column(name, justify="right")
    for name in names:
        if name != FUSED:
            out.add_column(f"fused/{name}", justify="right")
    for r in rows:
        cells = [f"{r['samples_per_sec'][n]:,.0f} ({min(r['all'][n]):,.0f}-{max(r['all'][n]):,.0f})"
                 if n in r["all"] else "-" for n in names]  # fmt: skip
        ratios = [anchors.ratio_cell(r, f"fused_vs_{n.replace(' ', '_')}") for n in names if n != FUSED]
        out.add_row(r["arch"], *cells, *ratios)
    return out


def main() -> None:
    parser = anchors.peer_parser(__doc__, "Hydra overrides for both hwbench jobs, e.g. device.threads=2")
    parser.add_argument("--jax-cnn", action="store_true", help="JAX's CNN too (XLA's CPU convolutions are slow)")
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS), help="which anchors run")
    args = parser.parse_args()
    skip = set(PEERS) - set(args.peers)
    for peer, modules in PEERS.items():
        if peer not in skip and not installed(*modules):
            skip.add(peer)
            print(f"cpu_fused: skipping the {peer} column: {' or '.join(modules)} not installed (pip install -e "
                  "'.[peers]')")  # fmt: skip
    rows = [measure(arch, args, skip) for arch in args.arch]
    Console(width=200).print(table(rows))
    print(json.dumps({"cpu_fused": rows}))


if __name__ == "__main__":
    main()
