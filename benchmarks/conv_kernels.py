#!/usr/bin/env python
"""The CNN's two convolutions alone, forward and backward, in torch and in TensorFlow: how much of the CNN's gap to
Keras on a CPU is the convolution kernels themselves (docs/performance.md).

Both take the Keras mnist_cnn's shapes at batch 128: a 3x3 convolution from 1 to 32 channels on 28x28 images, a
ReLU, a 3x3 convolution from 32 to 64 channels, then the gradients of every weight and bias (not of the images).
torch runs its best CPU layout (channels-last: the kernel hwbench's CNN takes where it measures faster), TensorFlow
its own (NHWC, a ``tf.function``, no XLA: what Keras' ``fit`` resolves to on a CPU). Each framework runs in a
process of its own, alternated ``--repeats`` times, ``--threads`` threads each; each run times ``--steps`` steps
after 10 of warm-up. Prints ms per step of each, and every back-to-back pair's ratio (torch / TF: above 1, torch
is slower), their median and spread, then one JSON line.

    pip install -e '.[peers]'
    python benchmarks/conv_kernels.py --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

BATCH, WARMUP = 128, 10


def torch_ms(steps: int, threads: int) -> float:
    """ms per forward and backward of the two convolutions in torch, channels-last."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    convs = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3))
    for conv in (convs[0], convs[2]):  # clone, not .to(): a 1-channel weight counts as channels-last already, and
        # oneDNN would then run the first convolution in NCHW (hwbench's Conv2d does the same)
        conv.weight.data = conv.weight.data.clone(memory_format=torch.channels_last)
    x = torch.rand(BATCH, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    grad = torch.rand(BATCH, 64, 24, 24).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        convs.zero_grad(set_to_none=True)
        convs(x).backward(grad)

    return timed(step, steps)


def tf_ms(steps: int, threads: int) -> float:
    """ms per forward and backward of the two convolutions in TensorFlow, NHWC, in a ``tf.function``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    glorot = tf.keras.initializers.GlorotUniform(seed=0)
    weights = [tf.Variable(glorot((3, 3, 1, 32))), tf.Variable(tf.zeros(32)),
               tf.Variable(glorot((3, 3, 32, 64))), tf.Variable(tf.zeros(64))]  # fmt: skip
    x = tf.random.uniform((BATCH, 28, 28, 1), seed=0)
    grad = tf.random.uniform((BATCH, 24, 24, 64), seed=1)

    @tf.function
    def step() -> list:
        k1, b1, k2, b2 = weights
        with tf.GradientTape() as tape:
            hidden = tf.nn.relu(tf.nn.conv2d(x, k1, 1, "VALID") + b1)
            out = tf.reduce_sum((tf.nn.conv2d(hidden, k2, 1, "VALID") + b2) * grad)  # its gradient is ``grad``
        return tape.gradient(out, weights)

    return timed(lambda: [g.numpy() for g in step()], steps)  # numpy(): the step has run when the clock is read


def timed(step: Callable[[], object], steps: int) -> float:
    for _ in range(WARMUP):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1e3


FRAMEWORKS = {"torch": torch_ms, "tf": tf_ms}


def one_run(framework: str, steps: int, threads: int) -> float:
    """One framework's ms per step, in a fresh process of its own."""
    cmd = [sys.executable, __file__, "--child", framework, "--steps", str(steps), "--threads", str(threads)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        raise SystemExit(f"error: the {framework} run failed: {lines[-1] if lines else 'no output'}")
    return json.loads(result.stdout.strip().splitlines()[-1])["ms_per_step"]


def tensorflow_installed() -> bool:
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except ValueError:  # present in sys.modules as None: hidden, as not installed
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per run, after 10 of warm-up")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", choices=sorted(FRAMEWORKS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"ms_per_step": FRAMEWORKS[args.child](args.steps, args.threads)}))
        return
    if not tensorflow_installed():  # the runs import it, each in its own process
        raise SystemExit("error: TensorFlow is not installed: pip install -e '.[peers]'")
    runs: dict[str, list[float]] = {name: [] for name in FRAMEWORKS}
    for repeat in range(args.repeats):  # alternated: a slow moment of a shared machine hits both
        for name in list(FRAMEWORKS) if repeat % 2 == 0 else list(FRAMEWORKS)[::-1]:
            runs[name].append(one_run(name, args.steps, args.threads))
    ratios = [t / f for t, f in zip(runs["torch"], runs["tf"], strict=True)]
    from hwbench.record.fingerprint import cpu_description  # the driver's only hwbench import: the CPU's name

    cpu = cpu_description()
    print(f"{cpu}: the CNN's two convolutions, forward and backward, batch {BATCH}, {args.threads} threads: "
          f"torch {statistics.median(runs['torch']):.2f} ms, TensorFlow {statistics.median(runs['tf']):.2f} ms a step; "
          f"torch / TF {statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip
    row = {"cpu": cpu, "threads": args.threads, "steps": args.steps, "torch_ms": runs["torch"], "tf_ms": runs["tf"],
           "torch_vs_tf": statistics.median(ratios), "torch_vs_tf_pairs": ratios}  # fmt: skip
    print(json.dumps({"conv_kernels": [row]}))  # a list of rows, as the other drivers print


if __name__ == "__main__":
    main()
