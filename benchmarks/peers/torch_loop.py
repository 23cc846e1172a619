#!/usr/bin/env python
"""The PyTorch script a user writes for the paper's networks: the anchor hwbench's speed is measured against.

torch's own layers in an nn.Sequential (the CNN in the textbook order, ReLU before the max-pool), Glorot-uniform
weights and zero biases (``--init keras``, hwbench's default; ``torch``: torch's own), plain SGD, cross-entropy on
the logits, and each epoch a fresh permutation cut into batches of indices (the last one short). No Lightning and
nothing of hwbench: the benchmark drivers run it in a process of its own, on the images hwbench trains on, handed
over in an .npz file (``x``: float32 (N, 1, 28, 28) in [0, 1]; ``y``: int64 labels).

It ends with one JSON line: training samples/s over the epochs after the first (warm-up, as in hwbench's steady
state), and the loss on the first 2,048 images after training (that it learned).

    python benchmarks/peers/torch_loop.py mnist_train.npz --arch ffnn --epochs 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator

import numpy as np
import recipe  # the sibling module: what every peer is told
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def arguments(doc: str | None) -> argparse.ArgumentParser:
    parser = recipe.arguments(doc)
    parser.add_argument("--hidden", type=int, default=512, help="the FFNN's hidden units")
    parser.add_argument("--dropout", type=float, nargs="+", help="FFNN: one rate (default 0); CNN: after the pool, "
                        "after the dense layer (default 0.25 0.5)")  # fmt: skip
    parser.add_argument("--init", choices=["keras", "torch"], default="keras")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch's CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    return parser


def paper_net(arch: str, hidden: int, dropout: list[float] | None, init: str) -> nn.Sequential:
    """784-512-512-10 with ReLU, or Keras' mnist_cnn: two 3x3 convolutions, a max-pool, two dense layers."""
    if arch == "ffnn":
        rate = dropout[0] if dropout else 0.0
        drop = [nn.Dropout(rate)] if rate else []
        layers = [nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), *drop, nn.Linear(hidden, hidden), nn.ReLU(),
                  *drop, nn.Linear(hidden, 10)]  # fmt: skip
    else:
        after_pool, after_dense = (dropout * 2)[:2] if dropout else (0.25, 0.5)
        layers = [nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Dropout(after_pool), nn.Flatten(), nn.Linear(64 * 12 * 12, 128), nn.ReLU(),
                  nn.Dropout(after_dense), nn.Linear(128, 10)]  # fmt: skip
    net = nn.Sequential(*layers)
    if init == "keras":
        for layer in net:
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
    return net


def start(args: argparse.Namespace) -> tuple[torch.device, Tensor, Tensor, nn.Sequential]:
    """Threads and seed set; the images and labels on the device; the network on it."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    arrays = np.load(args.arrays)
    x, y = (torch.from_numpy(arrays[name]).to(device) for name in ("x", "y"))
    return device, x, y, paper_net(args.arch, args.hidden, args.dropout, args.init).to(device)


def index_batches(n: int, batch_size: int, device: torch.device) -> Iterator[Tensor]:
    """One epoch's batches of indices into the training images: a fresh random permutation, cut up."""
    return iter(torch.randperm(n, device=device).split(batch_size))


def synchronize(device: torch.device) -> None:
    if device.type != "cpu":  # a GPU's queued kernels, before a clock is read
        torch.accelerator.synchronize(device)


def timed(epochs: int, epoch: Callable[[], None], device: torch.device) -> float:
    """Seconds of the epochs after the first, the device synchronized at both ends."""
    seconds = 0.0
    for number in range(epochs):
        if number == 1:
            synchronize(device)
            seconds = -time.perf_counter()
        epoch()
    synchronize(device)
    return seconds + time.perf_counter()


def report(net: nn.Module, x: Tensor, y: Tensor, epochs: int, seconds: float, **extra: object) -> None:
    """The JSON line the drivers read: steady-state samples/s, the loss after training, what ran."""
    net.eval()
    with torch.no_grad():
        loss = F.cross_entropy(net(x[:2048]), y[:2048]).item()
    print(json.dumps({"samples_per_sec": len(y) * (epochs - 1) / seconds, "final_loss": loss, "train_images": len(y),
                      "threads": torch.get_num_threads(), "torch": torch.__version__, **extra}))  # fmt: skip


def main() -> None:
    args = recipe.parse(arguments(__doc__))
    device, x, y, net = start(args)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr)

    def epoch() -> None:
        for idx in index_batches(len(y), args.batch_size, device):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    report(net, x, y, args.epochs, timed(args.epochs, epoch, device))


if __name__ == "__main__":
    main()
