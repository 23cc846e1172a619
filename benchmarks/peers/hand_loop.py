#!/usr/bin/env python
"""bench_overhead's ceiling: torch_loop.py's loop on hwbench's batching, executed as an hwbench strategy executes it.

The network, initialisation, SGD and JSON line are torch_loop.py's. What differs is what hwbench does too: each
epoch's permutation gathered once and contiguous batches sliced from it; the config's precision (autocast, and a
grad scaler for 16-mixed), float32 matmul precision, cuDNN autotuning and memory format; and the execution: eager,
a torch.compile'd net (``compiled``), each step captured in a CUDA graph by PyTorch's documented recipe (``graph``),
or a compiled forward and loss with a fused optimizer, ``--steps-per-graph`` steps a graph (``fused``). hwbench's
own CPU layers are not here: against this loop, hwbench's speed includes its kernel choice. No Lightning and
nothing of hwbench: the driver runs it in a process of its own.

    python benchmarks/peers/hand_loop.py mnist_train.npz --arch cnn --device cuda --execution graph
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable

import recipe  # the sibling module: what every peer is told
import torch
import torch.nn.functional as F
import torch_loop  # the sibling peer: its arguments, network, start, clock and report
from torch import Tensor, nn

Step = Callable[[Tensor, Tensor], None]


def arguments() -> argparse.ArgumentParser:
    parser = torch_loop.arguments(__doc__)
    parser.add_argument("--execution", choices=["eager", "compiled", "graph", "fused"], default="eager")
    parser.add_argument("--compile-mode", default="default", help="torch.compile's mode (compiled, fused)")
    parser.add_argument("--steps-per-graph", type=int, default=1, help="fused: optimizer steps per CUDA graph")
    parser.add_argument("--precision", choices=["32", "16-mixed", "bf16-mixed"], default="32")
    parser.add_argument("--matmul-precision", default="highest", choices=["highest", "high", "medium"])
    parser.add_argument("--cudnn-benchmark", action="store_true")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format for the convolutions")
    return parser


def make_step(net: nn.Module, args: argparse.Namespace, device: torch.device) -> Step:
    """One optimizer step, in the run's precision, memory format and execution."""
    fused = args.execution == "fused"
    options = {"fused": True} if fused else {}
    if args.execution == "graph" and "capturable" in inspect.signature(torch.optim.SGD).parameters:
        options = {"capturable": True}  # a CUDA graph may not read optimizer state on the host
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, **options)
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "16-mixed")
    dtype = torch.bfloat16 if args.precision == "bf16-mixed" else torch.half
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    def forward_loss(xb: Tensor, yb: Tensor) -> Tensor:  # no autocast cache: a graph must not capture its casts
        with torch.autocast(device.type, dtype=dtype, enabled="mixed" in args.precision, cache_enabled=False):
            return F.cross_entropy(net(xb.contiguous(memory_format=memory_format)), yb)

    if fused:
        forward_loss = torch.compile(forward_loss, mode=args.compile_mode, dynamic=False)

    def step(xb: Tensor, yb: Tensor) -> None:
        loss = forward_loss(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def capture(step: Step, steps: int, x: Tensor, y: Tensor) -> Callable[[list[Tensor], list[Tensor]], None]:
    """PyTorch's whole-network capture recipe, as its docs write it: warm up on a side stream, capture ``steps``
    steps on static inputs; then each group's batches are copied in and the graph replayed."""
    static_x, static_y = x.clone(), y.clone()
    xs, ys = static_x.chunk(steps), static_y.chunk(steps)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            for xb, yb in zip(xs, ys, strict=True):
                step(xb, yb)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for xb, yb in zip(xs, ys, strict=True):
            step(xb, yb)

    def replay(xbs: list[Tensor], ybs: list[Tensor]) -> None:
        torch.cat(xbs, out=static_x)
        torch.cat(ybs, out=static_y)
        graph.replay()

    return replay


def main() -> None:
    args = recipe.parse(arguments())
    torch.set_float32_matmul_precision(args.matmul_precision)
    torch.backends.cudnn.allow_tf32 = args.matmul_precision != "highest"  # convolutions follow it, as in hwbench
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    device, x, y, net = torch_loop.start(args)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if args.execution == "compiled":  # compiled on the warm-up epoch's first step
        net = torch.compile(net, mode=args.compile_mode)
    step = make_step(net, args, device)
    full_batches = max(1, len(y) // args.batch_size)  # a group longer than the epoch would never replay
    group = min(args.steps_per_graph, full_batches) if args.execution == "fused" else 1
    graphed = args.execution in ("graph", "fused")
    replay = capture(step, group, x[: group * args.batch_size], y[: group * args.batch_size]) if graphed else None

    def epoch() -> None:
        perm = torch.randperm(len(y), device=device)  # one gather an epoch, then slices: hwbench's batching
        xs, ys = x[perm].split(args.batch_size), y[perm].split(args.batch_size)
        for first in range(0, len(ys), group):
            xbs, ybs = xs[first : first + group], ys[first : first + group]
            if replay is not None and len(ybs) == group and all(len(yb) == args.batch_size for yb in ybs):
                replay(list(xbs), list(ybs))
            else:  # eager (compiled) steps: no graph, or the epoch's last, short group
                for xb, yb in zip(xbs, ybs, strict=True):
                    step(xb, yb)

    seconds = torch_loop.timed(args.epochs, epoch, device)
    torch_loop.report(net, x, y, args.epochs, seconds, execution=args.execution, precision=args.precision)


if __name__ == "__main__":
    main()
