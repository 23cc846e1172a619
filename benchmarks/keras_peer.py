#!/usr/bin/env python
"""hwbench against the paper's own stack (Keras 3 on TensorFlow) and the stock PyTorch loop a user writes, on a CPU.

Trains the paper's two networks four ways, each run in a fresh process, alternated ``--repeats`` times: (a) hwbench's
job (``python -m hwbench``, its results.json read back); (b) ``peers/hand_loop.py``, bench_overhead's plain loop on
torch's own layers with hwbench's batching and memory format; (c) ``peers/torch_loop.py``, the stock script a
PyTorch user writes (nn.Sequential of torch's layers, index batches, plain SGD); (d) ``peers/keras_loop.py``, Keras
3 on TensorFlow with ``model.fit``, built as Keras' mnist_mlp / mnist_cnn examples build them. (b) to (d) load
neither Lightning nor hwbench. All four get the same MNIST images (the training split after the 5,000 held-out
images; the CNN's first 10,000 on a CPU, as in bench_overhead), handed to the anchors in an .npz file, the same
batch size, thread count and epochs; the first epoch is warm-up in all four. Prints the CPU (vendor, family and
model, ISA), the median steady-state training samples/s of each, and every back-to-back pair's ratio with their
median and spread, as a table and one JSON line. Without TensorFlow (``pip install -e '.[peers]'``) the Keras
column is skipped with one line and the rest still runs.

    python benchmarks/keras_peer.py                            # ffnn and cnn, 5 repeats, 5 epochs
    python benchmarks/keras_peer.py --arch cnn --repeats 7
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

RATIOS = ("hwbench_vs_hand_loop", "hwbench_vs_stock_loop", "hwbench_vs_keras", "stock_loop_vs_keras")


def keras_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("keras") is not None


def measure(arch: str, args: argparse.Namespace, use_keras: bool) -> dict[str, Any]:
    """One row: the paths alternated ``args.repeats`` times, their medians and pairs."""
    extra = [f"seed={args.seed}", *args.overrides]
    overrides = anchors.hwbench_overrides(arch, "cpu", args.batch_size, args.epochs, extra)
    cfg = anchors.config(overrides)
    kernels: list[dict[str, str] | None] = []

    def hwbench() -> float:  # keeps the CPU kernels hwbench chose
        record = anchors.hwbench_record(overrides)
        kernels.append(record.cpu_kernels.chosen if record.cpu_kernels else None)
        return record.training.steady.samples_per_sec  # type: ignore[union-attr]

    with tempfile.TemporaryDirectory() as tmp:
        arrays = anchors.write_arrays(cfg, Path(tmp) / "mnist_train.npz")
        paths = {
            "hwbench": hwbench,
            "hand_loop": lambda: anchors.peer("hand_loop.py", anchors.hand_loop_args(cfg, arrays))["samples_per_sec"],
            "stock_loop": lambda: anchors.peer("torch_loop.py", anchors.loop_args(cfg, arrays))["samples_per_sec"],
        }
        if use_keras:
            paths["keras"] = lambda: anchors.peer("keras_loop.py", anchors.keras_args(cfg, arrays))
        runs = anchors.alternate(paths, args.repeats)
    hw, hand, stock = runs["hwbench"], runs["hand_loop"], runs["stock_loop"]
    row: dict[str, Any] = {
        "arch": arch, "device": "cpu", "cpu": cpu_description(), "threads": anchors.threads(cfg),
        "batch_size": args.batch_size, "train_images": cfg.data.train_limit or "all", "epochs": args.epochs,
        "repeats": args.repeats, "hwbench_samples_per_sec": statistics.median(hw),
        "hand_loop_samples_per_sec": statistics.median(hand), "stock_loop_samples_per_sec": statistics.median(stock),
        **anchors.pairs("hwbench_vs_hand_loop", hw, hand), **anchors.pairs("hwbench_vs_stock_loop", hw, stock),
        "hwbench_all": hw, "hand_loop_all": hand, "stock_loop_all": stock, "cpu_kernels": kernels,
        "torch": torch.__version__,
    }  # fmt: skip
    if peer := runs.get("keras"):
        keras_sps = [p["samples_per_sec"] for p in peer]
        row.update({
            "keras_samples_per_sec": statistics.median(keras_sps), **anchors.pairs("hwbench_vs_keras", hw, keras_sps),
            **anchors.pairs("stock_loop_vs_keras", stock, keras_sps), "keras_all": keras_sps,
            "keras_jit_compile": peer[0]["jit_compile"], "tensorflow": peer[0]["tensorflow"], "keras": peer[0]["keras"],
        })  # fmt: skip
    return row


def show(rows: list[dict[str, Any]], cpu: str) -> None:
    table = Table(title=f"hwbench vs a hand loop, a stock torch loop and Keras 3 + TensorFlow on {cpu} (median "
                  "steady-state training samples/s; ratios: median of the back-to-back pairs (min-max))")  # fmt: skip
    columns = ["arch", "threads", "hwbench", "hand loop", "stock torch", "Keras", "hwbench/hand", "hwbench/stock",
               "hwbench/Keras", "stock/Keras"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "arch" else "right")
    for r in rows:
        keras = f"{r['keras_samples_per_sec']:,.0f}" if "keras_samples_per_sec" in r else "-"
        table.add_row(r["arch"], str(r["threads"]), f"{r['hwbench_samples_per_sec']:,.0f}",
                      f"{r['hand_loop_samples_per_sec']:,.0f}", f"{r['stock_loop_samples_per_sec']:,.0f}", keras,
                      *(anchors.ratio_cell(r, name) for name in RATIOS))  # fmt: skip
    Console(width=170).print(table)


def main() -> None:
    parser = anchors.peer_parser(__doc__, "Hydra overrides for hwbench, e.g. data.train_limit=2000")
    parser.add_argument("--no-keras", action="store_true", help="leave the Keras column out")
    args = parser.parse_args()
    use_keras = not args.no_keras and keras_available()
    if not args.no_keras and not use_keras:
        print("keras_peer: skipping the Keras column: TensorFlow/Keras not installed (pip install -e '.[peers]')")
    rows = [measure(arch, args, use_keras) for arch in args.arch]
    show(rows, cpu_description())
    print(json.dumps({"keras_peer": rows}))


if __name__ == "__main__":
    main()
