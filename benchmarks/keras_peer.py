#!/usr/bin/env python
"""hwbench against the paper's own stack (Keras 3 on TensorFlow) and a stock PyTorch loop on the same CPU.

Trains the paper's two networks four ways, alternated, ``--repeats`` times each: (a) hwbench's normal
path, (b) the plain PyTorch loop of ``benchmarks/bench_overhead.py`` on hwbench's net (its CPU kernels
chosen as hwbench chooses them), (c) the same loop on the stock net a PyTorch user would write (torch's own
``nn.Linear``, ``nn.Conv2d``, ``nn.Dropout``, in the textbook order; no hwbench layer), (d) Keras 3 on
TensorFlow with ``model.fit``, built as Keras' mnist_mlp / mnist_cnn examples build them (Glorot-uniform
weights, zero biases, SGD lr 0.01, sparse categorical cross-entropy from logits). All four get the same
MNIST arrays (the training split after the 5,000 held-out images; the CNN's first 10,000 on a CPU, as in
bench_overhead), the same batch size, thread count and epochs; the first epoch is warm-up in all four.
Prints the CPU, the median steady-state training samples/s of each and the medians of the back-to-back
ratios, as a table and one JSON line. Without TensorFlow (``pip install -e '.[peers]'``) the Keras column
is skipped with one line and the rest still runs.

Keras runs in its own process, as a Keras user runs it (no torch in it, nor hwbench's allocator
setting); its fit is left at Keras' defaults (``jit_compile="auto"``, which Keras resolves to False on
a machine with no GPU; the JSON reports what it resolved to).

    python benchmarks/keras_peer.py                            # ffnn and cnn, 5 repeats, 5 epochs
    python benchmarks/keras_peer.py --arch cnn --repeats 7
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import bench_overhead  # the sibling script: its hwbench path and hand loop are the ones reused

TIMED_FROM_EPOCH = 1  # epoch 0 is warm-up, as in bench_overhead and hwbench's steady state


def stock_net(cfg: Any) -> Any:
    """The config's network as a PyTorch user writes it: torch's own layers, ReLU before the max-pool, the
    config's initialisation. The anchor hwbench's kernel choice has to beat."""
    from torch import nn

    from hwbench.model.paper import init_weights

    net, dropout = cfg.arch.net, cfg.arch.net.dropout
    if cfg.arch.name == "ffnn":
        hidden = net.hidden
        layers = [nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Dropout(dropout),
                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10)]  # fmt: skip
    else:
        after_pool, after_dense = (dropout, dropout) if isinstance(dropout, (int, float)) else dropout
        layers = [nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Dropout(after_pool), nn.Flatten(), nn.Linear(64 * 12 * 12, 128), nn.ReLU(),
                  nn.Dropout(after_dense), nn.Linear(128, 10)]  # fmt: skip
    return init_weights(nn.Sequential(*layers), cfg.init)


def hwbench_samples_per_sec(cfg: Any, kernels: list[dict[str, str] | None]) -> float:
    """hwbench's path; appends the CPU kernels it chose to ``kernels``."""
    record = bench_overhead.hwbench_record(cfg)
    kernels.append(record.fingerprint.cpu_kernels if record.fingerprint else None)
    return record.training.steady.samples_per_sec  # type: ignore[union-attr]


def keras_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("keras") is not None


def keras_worker(arch: str, arrays: str, epochs: int, batch_size: int, threads: int, seed: int) -> dict[str, Any]:
    """One Keras training run (in a fresh process); returns its steady-state samples/s."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import time

    import numpy as np
    import tensorflow as tf  # imported here: the peer is optional

    tf.config.threading.set_intra_op_parallelism_threads(threads)  # before any op runs
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    data = np.load(arrays)
    x, y = data["x"], data["y"]  # (N, 28, 28, 1) float32 in [0, 1], int64 labels
    if arch == "ffnn":  # hwbench's paper FFNN: mnist_mlp without its dropout
        body = [layers.Flatten(), layers.Dense(512, activation="relu"), layers.Dense(512, activation="relu")]
    else:  # mnist_cnn
        body = [
            layers.Conv2D(32, 3, activation="relu"), layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2), layers.Dropout(0.25), layers.Flatten(),
            layers.Dense(128, activation="relu"), layers.Dropout(0.5),
        ]  # fmt: skip
    model = keras.Sequential([keras.Input((28, 28, 1)), *body, layers.Dense(10)])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )

    class EpochClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.marks: dict[int, float] = {}

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.marks.setdefault(epoch, time.perf_counter())

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.marks[epochs] = time.perf_counter()

    clock = EpochClock()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[clock])
    seconds = clock.marks[epochs] - clock.marks[TIMED_FROM_EPOCH]
    return {
        "samples_per_sec": len(x) * (epochs - TIMED_FROM_EPOCH) / seconds,
        "jit_compile": bool(model.jit_compile),
        "final_loss": float(model.evaluate(x[:2048], y[:2048], verbose=0)),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def keras_samples_per_sec(arch: str, arrays: Path, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--keras-worker", arch, str(arrays), str(args.epochs),
           str(args.batch_size), str(threads), str(args.seed)]  # fmt: skip
    return bench_overhead.worker_result(cmd, "Keras")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["ffnn", "cnn"], choices=["ffnn", "cnn"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5, help="the first is warm-up; the rest are timed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-keras", action="store_true", help="leave the Keras column out")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the torch paths, e.g. data.train_limit=2000")
    args = parser.parse_args()

    import torch
    from hydra.utils import instantiate
    from rich.console import Console
    from rich.table import Table

    from hwbench.devices import available_cores
    from hwbench.record.fingerprint import cpu_description

    cpu = cpu_description()

    use_keras = not args.no_keras and keras_available()
    if not args.no_keras and not use_keras:
        print("keras_peer: skipping the Keras column: TensorFlow/Keras not installed (pip install -e '.[peers]')")
    rows = []
    for arch in args.arch:
        cfg = bench_overhead.config(arch, "cpu", args.batch_size, args.epochs, [f"seed={args.seed}", *args.overrides])
        threads = cfg.device.threads or available_cores()
        hw: list[float] = []
        hand: list[float] = []
        stock: list[float] = []
        peer: list[dict[str, Any]] = []
        kernels: list[dict[str, str] | None] = []

        with tempfile.TemporaryDirectory() as tmp:
            arrays = Path(tmp) / "mnist_train.npz"
            if use_keras:  # the very tensors the torch paths train on, NCHW -> NHWC (one channel: a reshape)
                data = instantiate(cfg.data)
                data.setup()
                x, y = data.splits["train"]
                import numpy as np

                np.savez(arrays, x=x.permute(0, 2, 3, 1).contiguous().numpy(), y=y.numpy())
            paths: list[tuple[Any, list]] = [
                (partial(hwbench_samples_per_sec, cfg, kernels), hw),
                (partial(bench_overhead.hand_loop_samples_per_sec, cfg), hand),
                (partial(bench_overhead.hand_loop_samples_per_sec, cfg, stock_net), stock),
            ]
            if use_keras:
                paths.append((partial(keras_samples_per_sec, arch, arrays, args, threads), peer))
            for repeat in range(args.repeats):  # alternate the order: slow moments hit every path
                for measure, results in paths if repeat % 2 == 0 else paths[::-1]:
                    results.append(measure())
        keras_sps = [p["samples_per_sec"] for p in peer]
        row: dict[str, Any] = {
            "arch": arch, "device": "cpu", "cpu": cpu, "threads": threads, "batch_size": args.batch_size,
            "train_images": cfg.data.train_limit or "all", "epochs": args.epochs, "repeats": args.repeats,
            "hwbench_samples_per_sec": statistics.median(hw), "hand_loop_samples_per_sec": statistics.median(hand),
            "stock_loop_samples_per_sec": statistics.median(stock),
            "hwbench_vs_hand_loop": statistics.median(a / b for a, b in zip(hw, hand, strict=True)),
            "hwbench_vs_stock_loop": statistics.median(a / b for a, b in zip(hw, stock, strict=True)),
            "hwbench_all": hw, "hand_loop_all": hand, "stock_loop_all": stock, "cpu_kernels": kernels,
            "torch": torch.__version__,
        }  # fmt: skip
        if peer:
            row.update({
                "keras_samples_per_sec": statistics.median(keras_sps),
                "hwbench_vs_keras": statistics.median(a / b for a, b in zip(hw, keras_sps, strict=True)),
                "stock_loop_vs_keras": statistics.median(a / b for a, b in zip(stock, keras_sps, strict=True)),
                "keras_all": keras_sps, "keras_jit_compile": peer[0]["jit_compile"],
                "tensorflow": peer[0]["tensorflow"], "keras": peer[0]["keras"],
            })  # fmt: skip
        rows.append(row)

    table = Table(title=f"hwbench vs a hand loop, a stock torch loop and Keras 3 + TensorFlow on {cpu} "
                  f"(median steady-state training samples/s)")  # fmt: skip
    columns = ["arch", "threads", "hwbench", "hand loop", "stock torch", "Keras", "hwbench/hand", "hwbench/stock",
               "hwbench/Keras", "stock/Keras"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "arch" else "right")
    for r in rows:
        keras_cells = (
            [f"{r['keras_samples_per_sec']:,.0f}", f"{r['hwbench_vs_keras']:.3f}", f"{r['stock_loop_vs_keras']:.3f}"]
            if "keras_samples_per_sec" in r else ["-", "-", "-"]
        )  # fmt: skip
        table.add_row(r["arch"], str(r["threads"]), f"{r['hwbench_samples_per_sec']:,.0f}",
                      f"{r['hand_loop_samples_per_sec']:,.0f}", f"{r['stock_loop_samples_per_sec']:,.0f}",
                      keras_cells[0], f"{r['hwbench_vs_hand_loop']:.3f}", f"{r['hwbench_vs_stock_loop']:.3f}",
                      *keras_cells[1:])  # fmt: skip
    Console(width=150).print(table)
    print(json.dumps({"keras_peer": rows}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--keras-worker":
        arch, arrays, epochs, batch, threads, seed = sys.argv[2:8]
        print(json.dumps(keras_worker(arch, arrays, int(epochs), int(batch), int(threads), int(seed))))
    else:
        main()
