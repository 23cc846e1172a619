#!/usr/bin/env python
"""The paper's own stack: Keras 3 on TensorFlow, the networks built as Keras' mnist_mlp and mnist_cnn examples build
them, trained with ``model.fit``.

Glorot-uniform weights and zero biases (Keras' defaults), SGD at ``--lr``, sparse categorical cross-entropy on the
logits, ``fit``'s own shuffling and batching, TensorFlow's intra- and inter-op pools at ``--threads``, and fit's
``jit_compile`` left at its default ("auto", which Keras resolves to False on a machine with no GPU; the JSON line
says what it resolved to). No torch, no Lightning, nothing of hwbench: the driver runs it in a process of its own,
on the images hwbench trains on (an .npz file: ``x`` float32 (N, 1, 28, 28), ``y`` int64).

It ends with one JSON line: training samples/s over the epochs after the first (warm-up, as in hwbench's steady
state), the loss on the first 2,048 images after training, and the versions.

    python benchmarks/peers/keras_loop.py mnist_train.npz --arch cnn --epochs 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import recipe  # the sibling module: what every peer is told

TIMED_FROM_EPOCH = 1  # epoch 0 is warm-up


def arguments() -> argparse.ArgumentParser:
    parser = recipe.arguments(__doc__)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    return parser


def build(arch: str, lr: float) -> Any:
    """The compiled Keras model: mnist_mlp (without its dropout, as the paper's FFNN) or mnist_cnn."""
    import keras
    from keras import layers

    if arch == "ffnn":
        body = [layers.Flatten(), layers.Dense(512, activation="relu"), layers.Dense(512, activation="relu")]
    else:
        body = [
            layers.Conv2D(32, 3, activation="relu"), layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2), layers.Dropout(0.25), layers.Flatten(),
            layers.Dense(128, activation="relu"), layers.Dropout(0.5),
        ]  # fmt: skip
    model = keras.Sequential([keras.Input((28, 28, 1)), *body, layers.Dense(10)])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def main() -> None:
    args = recipe.parse(arguments())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)  # before any op runs
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras

    keras.utils.set_random_seed(args.seed)
    arrays = np.load(args.arrays)
    x, y = arrays["x"].transpose(0, 2, 3, 1), arrays["y"]  # NCHW -> NHWC, Keras' layout (one channel: a reshape)
    model = build(args.arch, args.lr)

    class EpochClock(keras.callbacks.Callback):
        """The clock at each epoch's start, and at the last one's end."""

        def __init__(self) -> None:
            super().__init__()
            self.marks: dict[int, float] = {}

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.marks.setdefault(epoch, time.perf_counter())

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.marks[args.epochs] = time.perf_counter()

    clock = EpochClock()
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0, callbacks=[clock])
    seconds = clock.marks[args.epochs] - clock.marks[TIMED_FROM_EPOCH]
    print(json.dumps({
        "samples_per_sec": len(x) * (args.epochs - TIMED_FROM_EPOCH) / seconds, "jit_compile": bool(model.jit_compile),
        "final_loss": float(model.evaluate(x[:2048], y[:2048], verbose=0)), "train_images": len(x),
        "tensorflow": tf.__version__, "keras": keras.__version__,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
