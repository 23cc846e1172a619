#!/usr/bin/env python
"""What does hwbench cost over a hand-written PyTorch loop? Same model, data, batch size, device.

Runs (a) hwbench's normal training path (hwbench.job.runner.run, as ``python -m hwbench`` does) and (b) the
minimal loop below, alternating them, and prints the median steady-state training samples/s of each
and their ratio, as a table and as one JSON line. Steady state leaves out the first epoch in both.
The ratio is the median of the per-repeat ratios: each compares two runs made back to back, so the
slow drifts of a shared machine cancel out (medians of the speeds are printed too).
It also runs (a) on ``data=synthetic`` (random tensors made on the device): real MNIST should cost
nothing over it.

    python benchmarks/bench_overhead.py                       # ffnn and cnn on the CPU (and the GPU if present)
    python benchmarks/bench_overhead.py --arch ffnn --device gpu --batch-size 128 1024 --repeats 5
    python benchmarks/bench_overhead.py --device gpu execution=graph    # graphed: hwbench vs the docs' recipe
    python benchmarks/bench_overhead.py --device gpu execution=fused    # fused: hwbench vs the same by hand
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

from hwbench.data.datamodules import TensorBatches
from hwbench.devices import (
    configure_torch,
    keep_freed_host_memory,
    quiet_blas_threads,
    resolve_accelerator,
    synchronize,
)
from hwbench.execution import Eager
from hwbench.job.config import compose_config
from hwbench.job.console.quiet import extras
from hwbench.job.runner import build_net, run
from hwbench.model.cpu_kernels.autotune import ChoiceCache, choose_kernels
from hwbench.record.results import ResultsRecord

# images per epoch on a CPU: the CNN's full epoch takes a minute on 2 cores; 10,000 still give seconds of
# steady state. A GPU gets all 60,000: its epochs are short as it is.
CPU_TRAIN_LIMIT = {"ffnn": None, "cnn": 10_000}


def config(arch: str, device: str, batch_size: int, epochs: int, overrides: list[str]) -> DictConfig:
    limit = CPU_TRAIN_LIMIT.get(arch) if device == "cpu" else None
    return compose_config(
        [f"arch={arch}", f"device={device}", f"batch_size={batch_size}", f"epochs={epochs}",
         *([f"data.train_limit={limit}"] if limit else []), *overrides],
    )  # fmt: skip


def hwbench_record(cfg: DictConfig) -> ResultsRecord:
    """One run through hwbench's normal path; exits with its summary line if it has no steady-state figure."""
    with tempfile.TemporaryDirectory() as out:
        record = run(cfg, Path(out))
    if record.training is None or record.training.steady is None:
        raise SystemExit(f"error: {record.summary()}")
    return record


def hwbench_samples_per_sec(cfg: DictConfig) -> float:
    return hwbench_record(cfg).training.steady.samples_per_sec  # type: ignore[union-attr]


def worker_result(cmd: list[str], what: str) -> dict[str, Any]:
    """A peer's run in its own process (keras_peer, jax_peer): its figures, the last line it prints, as JSON."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"the {what} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def eager_net(cfg: DictConfig) -> nn.Module:
    return build_net(cfg, Eager())


def hand_loop_samples_per_sec(
    cfg: DictConfig, make_net: Callable[[DictConfig], nn.Module] = eager_net, kernels: ChoiceCache | None = None
) -> float:
    """The ceiling: the same net, data, batches and optimiser in the plainest loop PyTorch allows, executed
    the way the config's strategy executes (eager; a compiled net; a graph per step; or, for ``fused``, a
    compiled step with a fused optimizer and a group of steps per graph). ``make_net``: another net, e.g.
    keras_peer's stock torch layers; hwbench's CPU layers get a kernel choice measured as hwbench measures its
    own (``kernels``: kept across the repeats, as each hwbench job measures anew in its fresh process)."""
    device = torch.device(resolve_accelerator(cfg.device.accelerator))
    configure_torch(cfg.device)
    quiet_blas_threads()
    keep_freed_host_memory()
    torch.manual_seed(cfg.seed)
    data = instantiate(cfg.data)
    data.setup()
    x, y = (t.to(device) for t in data.splits["train"])
    execution = instantiate(cfg.execution)
    net = make_net(cfg).to(device)
    if execution.kind == "compiled":  # compiled on the warm-up epoch's first step
        torch.compiler.reset()
        net = torch.compile(net, mode=execution.mode)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    make_optimizer = instantiate(cfg.optim.optimizer)
    options = execution.optimizer_options(make_optimizer.func)  # fused, capturable: constructor arguments only
    optimizer = make_optimizer(net.parameters(), **options)
    group = execution.steps_per_graph or 1
    batches = TensorBatches(x, y, cfg.batch_size, shuffle=True, seed=cfg.seed, group=group)
    precision = str(cfg.device.precision)
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.half
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")

    def autocast() -> torch.autocast:  # no cache: a CUDA graph must not capture autocast's cached casts
        return torch.autocast(device.type, dtype=dtype, enabled="mixed" in precision, cache_enabled=False)

    def forward_loss(xb: Tensor, yb: Tensor) -> Tensor:
        with autocast():
            return F.cross_entropy(net(xb.contiguous(memory_format=memory_format)), yb)

    if execution.mode is not None and execution.kind == "fused":
        torch.compiler.reset()
        forward_loss = torch.compile(forward_loss, mode=execution.mode, dynamic=False)

    def step(xb: Tensor, yb: Tensor) -> None:
        loss = forward_loss(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    if device.type == "cpu":  # as hwbench chooses, before its clock starts
        first = x[: cfg.batch_size].contiguous(memory_format=memory_format)
        choose_kernels(net, first, y[: cfg.batch_size], cfg.device.cpu_kernels, autocast, cache=kernels)
    net.train()
    graphs = execution.kind in ("graph", "fused")
    replay = capture(step, group, *(t[: group * cfg.batch_size] for t in (x, y))) if graphs else None
    for epoch in range(cfg.epochs):
        if epoch == 1:  # the first epoch is warm-up, as in hwbench's steady-state figure
            synchronize(device)
            start, samples = time.perf_counter(), 0
        for steps in batches:
            if replay is not None and len(steps) == group and all(len(yb) == cfg.batch_size for _, yb in steps):
                replay(*zip(*steps, strict=True))
            else:  # the epoch's last group: eager (compiled) steps
                for xb, yb in steps:
                    step(xb, yb)
            if epoch >= 1:
                samples += sum(len(yb) for _, yb in steps)
    synchronize(device)
    return samples / (time.perf_counter() - start)


def capture(step: Callable[[Tensor, Tensor], None], steps: int, x: Tensor, y: Tensor) -> Callable[..., None]:
    """PyTorch's whole-network capture recipe, as its docs write it: warm up on a side stream, capture
    ``steps`` steps on static inputs, then copy each group's batches in and replay."""
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

    def replay(xbs: tuple[Tensor, ...], ybs: tuple[Tensor, ...]) -> None:
        torch.cat(xbs, out=static_x)
        torch.cat(ybs, out=static_y)
        graph.replay()

    return replay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["ffnn", "cnn"])
    parser.add_argument("--device", nargs="+", default=["cpu", "gpu"] if torch.cuda.is_available() else ["cpu"])
    parser.add_argument("--batch-size", nargs="+", type=int, default=[128])
    parser.add_argument("--epochs", type=int, default=5, help="the first is warm-up; the rest are timed")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "overrides", nargs="*", help="extra Hydra overrides for both paths, e.g. device.precision=bf16-mixed"
    )
    args = parser.parse_args()
    extras()

    rows = []
    for device in args.device:
        for arch in args.arch:
            for batch_size in args.batch_size:
                cfg = config(arch, device, batch_size, args.epochs, args.overrides)
                synthetic = config(arch, device, batch_size, args.epochs, [*args.overrides, "data=synthetic"])
                hw, hand, synth = [], [], []
                hand_loop = functools.partial(hand_loop_samples_per_sec, kernels=ChoiceCache())
                paths = [(hwbench_samples_per_sec, cfg, hw), (hand_loop, cfg, hand),
                         (hwbench_samples_per_sec, synthetic, synth)]  # fmt: skip
                for repeat in range(args.repeats):  # alternate the order: slow moments hit every path
                    for measure, path_cfg, results in paths if repeat % 2 == 0 else paths[::-1]:
                        results.append(measure(path_cfg))
                rows.append({
                    "arch": arch, "device": device, "batch_size": batch_size,
                    "precision": str(cfg.device.precision), "repeats": args.repeats,
                    "hwbench_samples_per_sec": statistics.median(hw),
                    "hand_loop_samples_per_sec": statistics.median(hand),
                    "ratio": statistics.median(a / b for a, b in zip(hw, hand, strict=True)),
                    "synthetic_samples_per_sec": statistics.median(synth),
                    "mnist_vs_synthetic": statistics.median(a / b for a, b in zip(hw, synth, strict=True)),
                    "hwbench_all": hw, "hand_loop_all": hand, "synthetic_all": synth,
                })  # fmt: skip

    table = Table(title="hwbench vs a hand-written loop (median steady-state training samples/s)")
    for column in ("arch", "device", "batch", "hwbench", "hand loop", "ratio", "hwbench synthetic", "mnist/synthetic"):
        table.add_column(column, justify="right" if column not in ("arch", "device") else "left")
    for r in rows:
        table.add_row(r["arch"], r["device"], str(r["batch_size"]), f"{r['hwbench_samples_per_sec']:,.0f}",
                      f"{r['hand_loop_samples_per_sec']:,.0f}", f"{r['ratio']:.3f}",
                      f"{r['synthetic_samples_per_sec']:,.0f}", f"{r['mnist_vs_synthetic']:.3f}")  # fmt: skip
    Console().print(table)
    print(json.dumps({"bench_overhead": rows}))


if __name__ == "__main__":
    main()
