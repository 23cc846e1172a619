#!/usr/bin/env python
"""Plain JAX, as a JAX user writes a fast MNIST loop: the paper's two networks, hwbench's recipe.

Glorot-uniform weights and zero biases, plain SGD at ``--lr``, cross-entropy on the logits, and one ``jax.jit``-compiled
epoch (``lax.scan`` over the epoch's shuffled batches; the last incomplete batch is dropped), float32 at matmul and
convolution precision HIGHEST. No torch, no Lightning, nothing of hwbench: the driver runs it in a process of its
own (JAX would otherwise take most of a GPU's memory from torch), on the images hwbench trains on (an .npz file:
``x`` float32 (N, 1, 28, 28), ``y`` int64).

It ends with one JSON line: training samples/s over the epochs after the first (warm-up and XLA's compile, as in
hwbench's steady state), the last epoch's mean loss, JAX's version and device.

    python benchmarks/peers/jax_loop.py mnist_train.npz --arch cnn --device gpu
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import recipe  # the sibling module: what every peer is told

TIMED_FROM_EPOCH = 1  # epoch 0 is warm-up and XLA's compile
DROPOUT = (0.25, 0.5)  # the CNN's, after the pool and after the dense layer


def arguments() -> argparse.ArgumentParser:
    parser = recipe.arguments(__doc__)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    return parser


def init_params(arch: str, seed: int) -> dict[str, dict[str, Any]]:
    import jax
    import jax.numpy as jnp

    glorot = jax.nn.initializers.glorot_uniform()  # over a kernel's fans too, as Keras does
    keys = iter(jax.random.split(jax.random.PRNGKey(seed), 8))

    def layer(shape: tuple[int, ...]) -> dict[str, Any]:
        return {"w": glorot(next(keys), shape), "b": jnp.zeros(shape[-1])}

    if arch == "ffnn":
        return {"l1": layer((784, 512)), "l2": layer((512, 512)), "l3": layer((512, 10))}
    return {"c1": layer((3, 3, 1, 32)), "c2": layer((3, 3, 32, 64)), "d1": layer((64 * 12 * 12, 128)),
            "d2": layer((128, 10))}  # fmt: skip


def logits_fn(arch: str) -> Callable[..., Any]:
    """The network's forward pass: (params, images NHWC, dropout key) -> logits."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def convolve(p: dict, h: jax.Array) -> jax.Array:
        out = lax.conv_general_dilated(h, p["w"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                       precision=lax.Precision.HIGHEST)  # fmt: skip
        return out + p["b"]

    def drop(h: jax.Array, rate: float, key: jax.Array) -> jax.Array:
        return jnp.where(jax.random.bernoulli(key, 1 - rate, h.shape), h / (1 - rate), 0)

    def logits(params: dict, xb: jax.Array, key: jax.Array) -> jax.Array:
        if arch == "ffnn":
            h = xb.reshape(len(xb), -1)
            h = jax.nn.relu(h @ params["l1"]["w"] + params["l1"]["b"])
            h = jax.nn.relu(h @ params["l2"]["w"] + params["l2"]["b"])
            return h @ params["l3"]["w"] + params["l3"]["b"]
        k1, k2 = jax.random.split(key)
        h = jax.nn.relu(convolve(params["c2"], jax.nn.relu(convolve(params["c1"], xb))))
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        h = drop(h, DROPOUT[0], k1).reshape(len(xb), -1)
        h = drop(jax.nn.relu(h @ params["d1"]["w"] + params["d1"]["b"]), DROPOUT[1], k2)
        return h @ params["d2"]["w"] + params["d2"]["b"]

    return logits


def epoch_fn(arch: str, steps: int, batch_size: int, lr: float) -> Callable[..., Any]:
    """One jitted epoch: a permutation, then ``steps`` SGD steps in a ``lax.scan``."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    logits = logits_fn(arch)

    def loss(params: dict, xb: jax.Array, yb: jax.Array, key: jax.Array) -> jax.Array:
        log_probs = jax.nn.log_softmax(logits(params, xb, key))
        return -jnp.mean(jnp.take_along_axis(log_probs, yb[:, None], axis=1))

    @jax.jit
    def epoch(params: dict, x: jax.Array, y: jax.Array, key: jax.Array) -> tuple[dict, jax.Array]:
        # the images are arguments, not closed over: a closed-over array is baked into the program as a constant
        perm_key, step_key = jax.random.split(key)
        perm = jax.random.permutation(perm_key, len(y))[: steps * batch_size].reshape(steps, batch_size)

        def step(params: dict, inputs: tuple) -> tuple[dict, jax.Array]:
            idx, k = inputs
            value, grads = jax.value_and_grad(loss)(params, x[idx], y[idx], k)
            return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), value

        return lax.scan(step, params, (perm, jax.random.split(step_key, steps)))

    return epoch


def main() -> None:
    args = recipe.parse(arguments())
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # share the GPU politely; it does not change speed
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_default_matmul_precision", "highest")  # true float32, as hwbench's highest
    device = jax.devices(args.device)[0]
    arrays = np.load(args.arrays)
    x = jax.device_put(jnp.asarray(arrays["x"].transpose(0, 2, 3, 1)), device)  # NHWC (one channel: a reshape)
    y = jax.device_put(jnp.asarray(arrays["y"], dtype=jnp.int32), device)
    steps = len(y) // args.batch_size
    params, epoch = init_params(args.arch, args.seed), epoch_fn(args.arch, steps, args.batch_size, args.lr)
    key, losses, start = jax.random.PRNGKey(args.seed + 1), None, 0.0
    for e in range(args.epochs):
        if e == TIMED_FROM_EPOCH:
            jax.block_until_ready(params)
            start = time.perf_counter()
        key, sub = jax.random.split(key)
        params, losses = epoch(params, x, y, sub)
    jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "samples_per_sec": steps * args.batch_size * (args.epochs - TIMED_FROM_EPOCH) / seconds,
        "final_loss": float(jnp.mean(losses)), "train_images": len(y), "jax": jax.__version__,
        "jax_device": str(device.device_kind),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
