"""What the benchmark drivers share: hwbench's run and each anchor's, every one in a fresh process, alternated.

hwbench runs as a user runs it (``python -m hwbench``, its results.json read back). Each anchor is a stand-alone
script under peers/ that loads neither Lightning nor hwbench and trains on the very images hwbench trains on, handed
over in an .npz file that this process writes with hwbench's own data module. Repeats alternate the order, so that
a slow moment of a shared machine hits every path, and each ratio compares two runs made back to back: the drivers
report every pair's ratio, their median and their spread (the slowest and fastest pair).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from hwbench.devices import available_cores, resolve_accelerator
from hwbench.job.config import compose_config
from hwbench.record.results import ResultsRecord, read_record

PEERS = Path(__file__).resolve().parent / "peers"
# images per epoch on a CPU: the CNN's full epoch takes a minute on 2 cores; 10,000 still give seconds of steady
# state. A GPU gets all 60,000: its epochs are short as it is.
CPU_TRAIN_LIMIT = {"ffnn": None, "cnn": 10_000}
TIMEOUT = 3600


def hwbench_overrides(arch: str, device: str, batch_size: int, epochs: int, overrides: list[str]) -> list[str]:
    """The job's Hydra overrides: the network, device, batch and epochs, the CPU's image limit, then the user's."""
    limit = CPU_TRAIN_LIMIT.get(arch) if device == "cpu" else None
    return [f"arch={arch}", f"device={device}", f"batch_size={batch_size}", f"epochs={epochs}",
            *([f"data.train_limit={limit}"] if limit else []), *overrides]  # fmt: skip


def config(overrides: list[str]) -> DictConfig:
    """The job's config, composed as ``python -m hwbench`` composes it: what the anchors are told to match."""
    cfg = compose_config(overrides)
    optimizer = cfg.optim.optimizer
    if optimizer._target_ != "torch.optim.SGD" or optimizer.get("momentum") or cfg.optim.get("scheduler"):
        raise SystemExit("error: the anchors train plain SGD: leave optim at sgd (lr= sets its rate)")
    return cfg


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "(no output)"


def hwbench_record(overrides: list[str]) -> ResultsRecord:
    """One ``python -m hwbench`` job in a fresh process, and its record; exits in one line without a steady state."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "hwbench", *overrides, f"output_root={out}"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
        found = list(Path(out).rglob("results.json"))
        if result.returncode != 0 or len(found) != 1:
            raise SystemExit(f"error: python -m hwbench {' '.join(overrides)}: {last_line(result.stderr)}")
        record = read_record(found[0])
    if record.training is None or record.training.steady is None:
        raise SystemExit(f"error: {record.summary()}")
    return record


def peer_command(script: str, args: list[str]) -> list[str]:
    """How an anchor runs: this Python, the script, its arguments; nothing imported on its behalf."""
    return [sys.executable, str(PEERS / script), *args]


def peer(script: str, args: list[str]) -> dict[str, Any]:
    """One anchor's run in a fresh process: the JSON line it ends with."""
    result = subprocess.run(peer_command(script, args), capture_output=True, text=True, timeout=TIMEOUT)
    if result.returncode != 0:
        raise SystemExit(f"error: {script} failed:\n{result.stderr[-3000:]}")
    return json.loads(last_line(result.stdout))


def threads(cfg: DictConfig) -> int:
    return cfg.device.threads or available_cores()


def write_arrays(cfg: DictConfig, path: Path) -> Path:
    """The job's training split, as hwbench's data module makes it (the held-out images removed, the limit
    applied), in an .npz file the anchors read: x float32 (N, 1, 28, 28), y int64."""
    data = instantiate(cfg.data)
    data.setup()
    x, y = data.splits["train"]
    np.savez(path, x=x.numpy(), y=y.numpy())
    return path


def loop_args(cfg: DictConfig, arrays: Path) -> list[str]:
    """torch_loop.py's (and hand_loop.py's) arguments for the job's network, recipe, threads and device."""
    dropout = cfg.arch.net.dropout
    rates = [dropout] if isinstance(dropout, (int, float)) else list(dropout)
    device = {"cuda": "cuda", "mps": "mps"}.get(resolve_accelerator(cfg.device.accelerator), "cpu")
    return [str(arrays), "--arch", cfg.arch.name, "--epochs", str(cfg.epochs), "--batch-size", str(cfg.batch_size),
            "--lr", str(cfg.lr), "--seed", str(cfg.seed), "--threads", str(threads(cfg)), "--init", cfg.init,
            "--device", device, "--dropout", *map(str, rates),
            *(["--hidden", str(cfg.arch.net.hidden)] if cfg.arch.name == "ffnn" else [])]  # fmt: skip


def hand_loop_args(cfg: DictConfig, arrays: Path) -> list[str]:
    """hand_loop.py's: torch_loop.py's, and the job's execution, precision and memory format."""
    execution, device = cfg.execution, cfg.device
    mode = execution.get("mode") or execution.get("compile_mode") or "default"
    kind = execution._target_.rsplit(".", 1)[-1].lower()  # hwbench.execution.Fused -> fused
    return [*loop_args(cfg, arrays), "--execution", kind, "--compile-mode", mode,
            "--steps-per-graph", str(execution.get("steps_per_graph") or 1), "--precision", str(device.precision),
            "--matmul-precision", device.matmul_precision,
            *(["--cudnn-benchmark"] if device.cudnn_benchmark else []),
            *(["--channels-last"] if cfg.channels_last else [])]  # fmt: skip


def keras_args(cfg: DictConfig, arrays: Path) -> list[str]:
    """keras_loop.py's: the job's network, epochs, batch, learning rate, threads and seed."""
    return [str(arrays), "--arch", cfg.arch.name, "--epochs", str(cfg.epochs), "--batch-size", str(cfg.batch_size),
            "--lr", str(cfg.lr), "--threads", str(threads(cfg)), "--seed", str(cfg.seed)]  # fmt: skip


def jax_args(cfg: DictConfig, arrays: Path) -> list[str]:
    """jax_loop.py's: the job's network, epochs, batch, learning rate, seed and device (cpu or gpu)."""
    device = "gpu" if resolve_accelerator(cfg.device.accelerator) == "cuda" else "cpu"
    return [str(arrays), "--arch", cfg.arch.name, "--epochs", str(cfg.epochs), "--batch-size", str(cfg.batch_size),
            "--lr", str(cfg.lr), "--seed", str(cfg.seed), "--device", device]  # fmt: skip


def peer_parser(doc: str | None, overrides_help: str) -> argparse.ArgumentParser:
    """The arguments every hwbench-against-its-anchors script takes: nets, batch, epochs, repeats, seed, overrides."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["ffnn", "cnn"], choices=["ffnn", "cnn"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5, help="the first is warm-up; the rest are timed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help=overrides_help)
    return parser


def alternate(paths: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[Any]]:
    """Each path's results over ``repeats`` rounds, the order reversed every other round."""
    results: dict[str, list[Any]] = {name: [] for name in paths}
    for repeat in range(repeats):
        for name in list(paths) if repeat % 2 == 0 else list(paths)[::-1]:
            results[name].append(paths[name]())
    return results


def pairs(name: str, ours: list[float], theirs: list[float]) -> dict[str, Any]:
    """Every back-to-back pair's ratio, their median (``name``) and spread (``name``_spread: min, max)."""
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    return {name: statistics.median(ratios), f"{name}_pairs": ratios, f"{name}_spread": [min(ratios), max(ratios)]}


def ratio_cell(row: dict[str, Any], name: str) -> str:
    """'0.866 (0.81-0.96)': the median of the pairs, and their spread where there are several."""
    if name not in row:
        return "-"
    low, high = row[f"{name}_spread"]
    return f"{row[name]:.3f}" + (f" ({low:.2f}-{high:.2f})" if len(row[f"{name}_pairs"]) > 1 else "")
