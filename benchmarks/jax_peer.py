#!/usr/bin/env python
"""hwbench against plain JAX on the same device: the paper's two networks, the same data and recipe.

JAX trains each network the way a JAX user writes a fast MNIST loop: Glorot-uniform weights and zero biases,
plain SGD at lr 0.01, cross-entropy on the logits, and one ``jax.jit``-compiled epoch (``lax.scan`` over the
epoch's shuffled batches; the last incomplete batch is dropped), float32 at matmul and convolution precision
HIGHEST. hwbench runs its normal path with the given overrides (``execution=fused``, say). Both get the
same training images and batch size, alternated ``--repeats`` times; the first epoch is warm-up (and
JAX's compile) in both. Prints the median steady-state training samples/s and the median of the back-to-back
ratios, as a table and one JSON line (keras_peer's format). Without JAX (``pip install -e '.[peers]'``) the
JAX column is skipped with one line.

JAX runs in its own process (it would otherwise take most of the GPU's memory from torch).

    python benchmarks/jax_peer.py --device gpu execution=fused     # on a GPU: hwbench's fastest mode vs XLA
    python benchmarks/jax_peer.py --device cpu --arch ffnn
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

import bench_overhead  # the sibling script: its hwbench path and data are the ones reused

TIMED_FROM_EPOCH = 1  # epoch 0 is warm-up (and XLA's compile), as in hwbench's steady state


def jax_available() -> bool:
    return importlib.util.find_spec("jax") is not None


def jax_worker(arch: str, arrays: str, epochs: int, batch_size: int, seed: int, device: str) -> dict[str, Any]:
    """One JAX training run (in a fresh process); returns its steady-state samples/s."""
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # share the GPU politely; it does not change speed
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    jax.config.update("jax_default_matmul_precision", "highest")  # true float32, as hwbench's highest
    dev = jax.devices("gpu" if device == "gpu" else "cpu")[0]
    data = np.load(arrays)
    x = jax.device_put(jnp.asarray(data["x"]), dev)  # (N, 28, 28, 1) float32 in [0, 1]
    y = jax.device_put(jnp.asarray(data["y"], dtype=jnp.int32), dev)
    glorot = jax.nn.initializers.glorot_uniform()
    keys = iter(jax.random.split(jax.random.PRNGKey(seed), 8))
    dropout = (0.25, 0.5)

    def dense(n_in: int, n_out: int) -> dict[str, jax.Array]:
        return {"w": glorot(next(keys), (n_in, n_out)), "b": jnp.zeros(n_out)}

    def conv(c_in: int, c_out: int) -> dict[str, jax.Array]:  # HWIO, Glorot over the kernel's fans as Keras
        return {"w": glorot(next(keys), (3, 3, c_in, c_out)), "b": jnp.zeros(c_out)}

    if arch == "ffnn":
        params = {"l1": dense(784, 512), "l2": dense(512, 512), "l3": dense(512, 10)}
    else:
        params = {"c1": conv(1, 32), "c2": conv(32, 64), "d1": dense(64 * 12 * 12, 128), "d2": dense(128, 10)}

    def convolve(p: dict, h: jax.Array) -> jax.Array:
        out = lax.conv_general_dilated(h, p["w"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                       precision=lax.Precision.HIGHEST)  # fmt: skip
        return out + p["b"]

    def drop(h: jax.Array, rate: float, key: jax.Array) -> jax.Array:
        keep = jax.random.bernoulli(key, 1 - rate, h.shape)
        return jnp.where(keep, h / (1 - rate), 0)

    def logits(params: dict, xb: jax.Array, key: jax.Array) -> jax.Array:
        if arch == "ffnn":
            h = xb.reshape(len(xb), -1)
            h = jax.nn.relu(h @ params["l1"]["w"] + params["l1"]["b"])
            h = jax.nn.relu(h @ params["l2"]["w"] + params["l2"]["b"])
            return h @ params["l3"]["w"] + params["l3"]["b"]
        k1, k2 = jax.random.split(key)
        h = jax.nn.relu(convolve(params["c1"], xb))
        h = jax.nn.relu(convolve(params["c2"], h))
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        h = drop(h, dropout[0], k1).reshape(len(xb), -1)
        h = drop(jax.nn.relu(h @ params["d1"]["w"] + params["d1"]["b"]), dropout[1], k2)
        return h @ params["d2"]["w"] + params["d2"]["b"]

    def loss(params: dict, xb: jax.Array, yb: jax.Array, key: jax.Array) -> jax.Array:
        log_probs = jax.nn.log_softmax(logits(params, xb, key))
        return -jnp.mean(jnp.take_along_axis(log_probs, yb[:, None], axis=1))

    steps = len(y) // batch_size

    @jax.jit
    def epoch(params: dict, x: jax.Array, y: jax.Array, key: jax.Array) -> tuple[dict, jax.Array]:
        # the images are arguments, not closed over: a closed-over array is baked into the program as a constant
        perm_key, step_key = jax.random.split(key)
        perm = jax.random.permutation(perm_key, len(y))[: steps * batch_size].reshape(steps, batch_size)

        def step(params: dict, inputs: tuple) -> tuple[dict, jax.Array]:
            idx, k = inputs
            value, grads = jax.value_and_grad(loss)(params, x[idx], y[idx], k)
            return jax.tree_util.tree_map(lambda p, g: p - 0.01 * g, params, grads), value

        return lax.scan(step, params, (perm, jax.random.split(step_key, steps)))

    key = jax.random.PRNGKey(seed + 1)
    losses = None
    for e in range(epochs):
        if e == TIMED_FROM_EPOCH:
            jax.block_until_ready(params)
            start = time.perf_counter()
        key, sub = jax.random.split(key)
        params, losses = epoch(params, x, y, sub)
    jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    return {
        "samples_per_sec": steps * batch_size * (epochs - TIMED_FROM_EPOCH) / seconds,
        "final_loss": float(jnp.mean(losses)),
        "jax": jax.__version__,
        "jax_device": str(dev.device_kind),
    }


def jax_samples_per_sec(arch: str, arrays: Path, args: argparse.Namespace, device: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--jax-worker", arch, str(arrays), str(args.epochs), str(args.batch_size),
           str(args.seed), device]  # fmt: skip
    return bench_overhead.worker_result(cmd, "JAX")


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

    import numpy as np
    import torch
    from hydra.utils import instantiate
    from rich.console import Console
    from rich.table import Table

    if not jax_available():
        print("jax_peer: skipping the JAX column: JAX not installed (pip install -e '.[peers]')")
    rows = []
    for arch in args.arch:
        cfg = bench_overhead.config(arch, args.device, args.batch_size, args.epochs,
                                    [f"seed={args.seed}", *args.overrides])  # fmt: skip
        hw: list[float] = []
        peer: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory() as tmp:
            arrays = Path(tmp) / "mnist_train.npz"
            data = instantiate(cfg.data)
            data.setup()
            x, y = data.splits["train"]  # hwbench's very training images, NCHW -> NHWC (one channel: a reshape)
            np.savez(arrays, x=x.permute(0, 2, 3, 1).contiguous().numpy(), y=y.numpy())
            paths: list[tuple[Any, list]] = [(partial(bench_overhead.hwbench_samples_per_sec, cfg), hw)]
            if jax_available():
                paths.append((partial(jax_samples_per_sec, arch, arrays, args, args.device), peer))
            for repeat in range(args.repeats):  # alternate the order: slow moments hit every path
                for measure, results in paths if repeat % 2 == 0 else paths[::-1]:
                    results.append(measure())
        row: dict[str, Any] = {
            "arch": arch, "device": args.device, "batch_size": args.batch_size, "train_images": len(y),
            "epochs": args.epochs, "repeats": args.repeats, "overrides": args.overrides,
            "hwbench_samples_per_sec": statistics.median(hw), "hwbench_all": hw, "torch": torch.__version__,
        }  # fmt: skip
        if peer:
            jax_sps = [p["samples_per_sec"] for p in peer]
            row.update({
                "jax_samples_per_sec": statistics.median(jax_sps), "jax_all": jax_sps,
                "hwbench_vs_jax": statistics.median(a / b for a, b in zip(hw, jax_sps, strict=True)),
                "jax": peer[0]["jax"], "jax_device": peer[0]["jax_device"],
            })  # fmt: skip
        rows.append(row)

    table = Table(title=f"hwbench vs plain JAX on {args.device} (median steady-state training samples/s)")
    for column in ("arch", "hwbench", "JAX", "hwbench/JAX"):
        table.add_column(column, justify="left" if column == "arch" else "right")
    for r in rows:
        jax_cells = [f"{r['jax_samples_per_sec']:,.0f}", f"{r['hwbench_vs_jax']:.3f}"] if "jax_all" in r else ["-", "-"]
        table.add_row(r["arch"], f"{r['hwbench_samples_per_sec']:,.0f}", *jax_cells)
    Console(width=150).print(table)
    print(json.dumps({"jax_peer": rows}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--jax-worker":
        arch, arrays, epochs, batch, seed, device = sys.argv[2:8]
        print(json.dumps(jax_worker(arch, arrays, int(epochs), int(batch), int(seed), device)))
    else:
        main()
