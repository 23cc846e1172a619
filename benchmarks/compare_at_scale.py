#!/usr/bin/env python
"""Does hwbench-compare stay fast and small at scale? N synthetic but schema-valid records, then compare on them.

Writes N results.json records into a temporary folder, shaped as real sweeps leave them (real composed
configs, full fingerprints, epoch tables of 1-5 epochs: one length per network, as its sweeps run it; CPU,
H100 and A100 hosts, 1-4 devices; some skipped, failed, interrupted and diverged runs), then runs
``python -m hwbench.compare`` on the folder in a child process and prints its wall seconds and peak memory
(it and its worker processes together), as lines and as one JSON line. The records are written once per size
and read by every repeat (a warm page cache, as when one compares the same folders twice).

    python benchmarks/compare_at_scale.py                          # 500, 5,000 and 50,000 records, 3 repeats
    python benchmarks/compare_at_scale.py --records 50000 --repeats 1 --keep /tmp/records
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from omegaconf import OmegaConf

from hwbench.job.config import compose_config
from hwbench.record.results import SCHEMA_VERSION, ResultsRecord

ARCHS = {"ffnn": 40_000.0, "cnn": 3_000.0, "speedrun": 5_000.0}  # CPU samples/s on 2 threads, roughly
EPOCHS = {"ffnn": 5, "cnn": 3, "speedrun": 1}  # runs of other lengths are other setups (hwbench.compare.setups)
# (hosts, CPU, GPU, accelerator, threads, speed over the 2-thread CPU, device counts)
MACHINES = [
    ([f"vm{k}" for k in range(10)], "AMD EPYC 7B13", None, "cpu", 2, 1.0, (1,)),
    ([f"h100-{k:02d}" for k in range(40)], "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz", "NVIDIA H100 80GB HBM3",
     "cuda", 16, 12.0, (1, 2, 4)),
    ([f"a100-{k:02d}" for k in range(20)], "AMD EPYC 7763 64-Core Processor", "NVIDIA A100-SXM4-80GB", "cuda", 32,
     8.0, (1, 2, 4)),
]  # fmt: skip
EXECUTION = {None: "eager", "NVIDIA H100 80GB HBM3": "fused", "NVIDIA A100-SXM4-80GB": "graph"}  # by GPU
NOT_OK = [
    ("skipped", "no CUDA device: this machine has none"),
    ("failed", "RuntimeError: CUDA error: out of memory"),
    ("interrupted", "SIGTERM after 2 epoch(s)"),
    ("diverged", "the training loss is not finite in epoch 1"),
]


def configs() -> dict[tuple[str, str], dict[str, Any]]:
    """The real composed config of each network on a CPU and on a GPU (the records copy and vary them)."""
    return {
        (arch, device): OmegaConf.to_container(compose_config([f"arch={arch}", f"device={device}"]), resolve=True)  # type: ignore[misc]
        for arch in ARCHS
        for device in ("cpu", "gpu")
    }


def synthetic_record(i: int, rng: random.Random, base: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    arch = rng.choice(list(ARCHS))
    hosts, cpu, gpu, accelerator, threads, factor, sizes = rng.choice(MACHINES)
    device = "gpu" if gpu else "cpu"
    world = rng.choice(sizes)
    precision = rng.choice(("32", "bf16-mixed")) if gpu else "32"
    batch = rng.choice((128, 1024)) if gpu else 128
    epochs = EPOCHS[arch]
    cfg = copy.deepcopy(base[(arch, device)])
    cfg["epochs"], cfg["batch_size"], cfg["seed"] = epochs, batch, i % 5
    cfg["device"] |= {"devices": world, "precision": precision}
    cfg["run_name"] = run_name = f"{arch}_{device}_e{epochs}"
    speed = ARCHS[arch] * factor * world * (1.5 if batch == 1024 else 1.0) * rng.lognormvariate(0, 0.15)
    started = f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00+00:00"
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "status": "ok", "run_name": run_name, "arch": arch, "device": device,
        "epochs": epochs, "started": started, "finished": started, "config": cfg,
        "fingerprint": {"host": rng.choice(hosts), "cpu": cpu, "threads": threads, "accelerator": accelerator,
                        "precision": precision, "gpus": [{"name": gpu, "memory_gb": 79.6, "capability": "9.0"}] if gpu
                        else [], "os": "Linux-6.8.0-x86_64-with-glibc2.39", "physical_cores": threads,
                        "logical_cores": threads, "ram_gb": 503.2, "driver": "580.159.04" if gpu else None,
                        "cuda": "13.0" if gpu else None, "cudnn": 91300 if gpu else None, "python": "3.11.7",
                        "torch": "2.11.0", "lightning": "2.6.6"},
        "world_size": world, "strategy": "DDPStrategy" if world > 1 else "SingleDeviceStrategy",
        "backend": "nccl" if world > 1 else None, "per_device_batch_size": batch, "global_batch_size": batch * world,
        "execution": {"kind": EXECUTION[gpu]},
    }  # fmt: skip
    table = epoch_table(epochs, speed, 0.80 + 0.1 * rng.random())
    status, reason = rng.choice(NOT_OK) if rng.random() < 0.08 else ("ok", None)
    record |= {"status": status, "reason": reason}
    if status == "skipped":
        return record | {"fingerprint": None}
    record |= measured(table, speed, batch, gpu is not None, rng)
    if status == "ok":
        acc = table[-1]["val_acc"]
        record |= {"metrics": {"test_acc": acc, "test_loss": 1 - acc},
                   "inference": {"batch_size": 1024, "samples_per_sec": speed * 20, "latency_ms_p50": 0.1,
                                 "latency_ms_p90": 0.2}}  # fmt: skip
    return record


def epoch_table(epochs: int, speed: float, acc: float) -> list[dict[str, Any]]:
    """A run's epochs: the first slower (warm-up), the accuracy climbing towards 99.5%."""
    table, seconds = [], 0.0
    for epoch in range(1, epochs + 1):
        epoch_seconds = 55_000 / (speed * (0.7 if epoch == 1 else 1.0))
        seconds += epoch_seconds
        acc = min(0.995, acc + (1 - acc) * 0.4)
        table.append({"epoch": epoch, "seconds": epoch_seconds * 1.1, "train_seconds": seconds,
                      "samples_per_sec": 55_000 / epoch_seconds, "samples": 55_000, "train_loss": 1 - acc,
                      "train_acc": acc - 0.01, "val_loss": 1.1 - acc, "val_acc": acc})  # fmt: skip
    return table


def measured(table: list[dict[str, Any]], speed: float, batch: int, gpu: bool, rng: random.Random) -> dict[str, Any]:
    """What a run that trained has measured, whether it then finished or not."""
    seconds, epochs = table[-1]["train_seconds"], len(table)
    training = {"epochs": table, "seconds": seconds,
                "overall": {"samples_per_sec": speed * 0.9, "batches_per_sec": speed * 0.9 / batch},
                "steady": {"samples_per_sec": speed, "batches_per_sec": speed / batch} if epochs > 1 else None,
                "steady_excludes": "first epoch", "flops_per_sample": {"forward": 1_337_344, "train": 3_209_216},
                "time_to_val_acc": {"0.97": next((e["train_seconds"] for e in table if e["val_acc"] >= 0.97), None),
                                    "0.98": None, "0.99": None}}  # fmt: skip
    return {"training": training, "wall_seconds": seconds * 1.3,
            "resources": {"peak_host_rss_mb": 900.0 + 100 * rng.random(), "peak_host_rss_scope": "job",
                          "gpu_busy_percent": 30 + 70 * rng.random() if gpu else None,
                          "samples_per_joule": speed / 300 if gpu else None, "energy_source": "gpu" if gpu else None,
                          "cpu_energy_unavailable": "no /sys/class/powercap"}}  # fmt: skip


def write_records(folder: Path, n: int, seed: int = 0) -> None:
    """``n`` records under ``folder``, 100 jobs a sweep folder, each validated as hwbench validates its own,
    beside a log and a .hydra folder as in a real job's folder (the walk visits those too)."""
    rng, base = random.Random(seed), configs()
    for i in range(n):
        record = synthetic_record(i, rng, base)
        job = folder / "multiruns" / f"sweep{i // 100:04d}" / f"{i % 100}_{record['run_name']}"
        (job / ".hydra").mkdir(parents=True)
        (job / "results.json").write_text(ResultsRecord.model_validate(record).model_dump_json(indent=2))
        (job / "hwbench.log").write_text(f"[{record['started']}][hwbench.summary][INFO] - {record['run_name']}\n")
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            (job / ".hydra" / name).write_text(f"# {name}\n")


def measure(folder: Path, out: Path) -> dict[str, float]:
    """hwbench-compare on ``folder`` in a child process: wall seconds; CPU seconds, it and its worker processes
    together (on a shared machine the steadier figure: what other processes take shows in the wall time, not
    here); and the peak memory of all of them together: the sum of their RSS every 50 ms (an upper bound: pages
    they share count once per process), of their PSS (shared pages split between them) every 500 ms (reading
    a process's PSS walks its page tables: sampled more often, it takes CPU from the run it measures)."""
    cmd = [sys.executable, "-m", "hwbench.compare", str(folder), "--out", str(out)]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    main_process, peak_rss, peak_pss = psutil.Process(child.pid), 0, 0
    for sample in itertools.count():
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)  # usage: the child's and its reaped workers'
        if pid:
            break
        with contextlib.suppress(psutil.Error):  # a worker may end between listing and reading it
            tree = [main_process, *main_process.children(recursive=True)]
            peak_rss = max(peak_rss, sum(p.memory_info().rss for p in tree))
            if sample % 10 == 0:
                peak_pss = max(peak_pss, sum(p.memory_full_info().pss for p in tree))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"error: hwbench-compare exited {child.returncode}: {child.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_mb": peak_rss / 2**20,
            "peak_pss_mb": peak_pss / 2**20}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", nargs="+", type=int, default=[500, 5_000, 50_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the records here and keep them (default: a temp folder)")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="hwbench-scale-") as tmp:
        for n in args.records:
            folder = (args.keep or Path(tmp)) / f"records_{n}"
            start = time.perf_counter()
            write_records(folder, n)
            written = time.perf_counter() - start
            load = os.getloadavg()[0]  # a shared machine: what else ran shows here
            runs = [measure(folder, Path(tmp) / f"report_{n}_{k}") for k in range(args.repeats)]
            results.append({"records": n, "seconds": statistics.median(r["seconds"] for r in runs),
                            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
                            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                            "peak_pss_mb": max(r["peak_pss_mb"] for r in runs), "runs": runs,
                            "write_seconds": written, "load_before": load,
                            "load_after": os.getloadavg()[0]})  # fmt: skip
            r = results[-1]
            print(f"{n:>7,} records: {r['seconds']:.2f} s, {r['cpu_seconds']:.2f} CPU s (medians of {args.repeats}); "
                  f"peak memory {r['peak_pss_mb']:.0f} MB PSS, {r['peak_rss_mb']:.0f} MB RSS (all processes); "
                  f"load {load:.1f}", flush=True)  # fmt: skip
    print(json.dumps({"compare_at_scale": results, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
