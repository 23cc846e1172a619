#!/usr/bin/env python
"""Which changes make the paper's CNN train faster on a CPU? One lever at a time, against plain eager.

Each variant is the same network (layers, dropout rates, loss, SGD lr 0.01) built one way; each trains
on the same real MNIST batches (batch 128) in the plain loop of bench_overhead. Every round runs all
variants back to back in alternating order: ``--warmup`` steps, then ``--steps`` timed steps; rounds
are short and many, so that a busy moment of a shared machine hits every variant. Prints each
variant's median ms/step, its fastest round, and the median of its per-round ratio to the first
variant (>1: faster), as a table and one JSON line.

    python benchmarks/cnn_levers.py                          # the default levers, 7 rounds
    python benchmarks/cnn_levers.py --variants eager hwbench compile compile:max-autotune-no-cudagraphs
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from hwbench.data.datamodules import MNISTDataModule, TensorBatches
from hwbench.devices import available_cores, keep_freed_host_memory
from hwbench.model.cpu_kernels import Dropout
from hwbench.model.cpu_kernels.autotune import choose_kernels
from hwbench.model.paper import CNN, init_weights


def cnn(pool_first: bool = False, inplace: bool = False, fast_dropout: bool = False) -> nn.Sequential:
    """The CNN's layers; the flags switch single levers on (all off: the textbook eager stack)."""
    relu = lambda: nn.ReLU(inplace=inplace)  # noqa: E731

    def drop(p: float) -> nn.Module:
        if not fast_dropout:
            return nn.Dropout(p)
        layer = Dropout(p)
        layer.kernel = "bytes"
        return layer

    pool_relu = [nn.MaxPool2d(2), relu()] if pool_first else [relu(), nn.MaxPool2d(2)]
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), relu(), nn.Conv2d(32, 64, 3), *pool_relu, drop(0.25), nn.Flatten(),
        nn.Linear(64 * 12 * 12, 128), relu(), drop(0.5), nn.Linear(128, 10),
    )  # fmt: skip


def variant(name: str) -> nn.Module:
    """``eager``, ``compile`` (``compile:MODE``), ``hwbench`` (hwbench's CNN, its kernels chosen as a run
    chooses them on this machine), or levers
    joined by ``+``: ``pool`` (pool before the second ReLU), ``inplace`` (in-place ReLUs), ``dropout``
    (hwbench's Dropout), ``cl`` (channels_last), e.g. ``cl+pool``, ``hwbench+cl``."""
    levers = set(name.split("+"))
    if "compile" in name:
        return torch.compile(cnn(), mode=name.partition(":")[2] or "default")
    net = CNN() if "hwbench" in levers else cnn("pool" in levers, "inplace" in levers, "dropout" in levers)
    return net.to(memory_format=torch.channels_last) if "cl" in levers else net


DEFAULT = ["eager", "pool", "dropout", "cl", "cl+pool", "cl+dropout", "hwbench", "hwbench+cl"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=DEFAULT, help=variant.__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=available_cores())
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    keep_freed_host_memory()  # as hwbench and bench_overhead run
    data = MNISTDataModule(train_limit=10_000)
    data.setup()
    x, y = data.splits["train"]
    batches = list(TensorBatches(x, y, 128, shuffle=True, seed=0))[:-1]  # full batches only
    nets = {}
    for name in args.variants:
        torch.manual_seed(0)
        net = init_weights(variant(name), "keras").train()
        if "hwbench" in name.split("+"):
            fmt = torch.channels_last if "cl" in name.split("+") else torch.contiguous_format
            choose_kernels(net, batches[0][0].contiguous(memory_format=fmt), batches[0][1], {})
        nets[name] = (net, torch.optim.SGD(net.parameters(), lr=0.01))
    channels_last = {n for n in nets if "cl" in n.split("+")}

    def timed(name: str) -> float:
        net, optimizer = nets[name]
        fmt = torch.channels_last if name in channels_last else torch.contiguous_format
        for i in range(args.warmup + args.steps):
            if i == args.warmup:
                start = time.perf_counter()
            xb, yb = batches[i % len(batches)]
            loss = F.cross_entropy(net(xb.contiguous(memory_format=fmt)), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - start) / args.steps * 1e3

    ms: dict[str, list[float]] = {n: [] for n in nets}
    for r in range(args.rounds):
        for name in args.variants if r % 2 == 0 else args.variants[::-1]:
            ms[name].append(timed(name))
    for name in args.variants:  # the first round also compiled and warmed up: left out
        ms[name] = ms[name][1:]
    base = ms[args.variants[0]]
    rows = [
        {"variant": n, "ms_per_step": statistics.median(t), "fastest_ms": min(t),
         "samples_per_sec": 128e3 / statistics.median(t),
         "speedup_vs_first": statistics.median(b / a for a, b in zip(t, base, strict=True)), "all_ms": t}
        for n, t in ms.items()
    ]  # fmt: skip
    print(f"{'variant':28} {'ms/step':>8} {'fastest':>8} {'samples/s':>10} {'vs ' + args.variants[0]:>10}")
    for row in rows:
        print(f"{row['variant']:28} {row['ms_per_step']:8.2f} {row['fastest_ms']:8.2f} "
              f"{row['samples_per_sec']:10,.0f} {row['speedup_vs_first']:10.3f}")  # fmt: skip
    print(json.dumps({"cnn_levers": rows, "threads": args.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
