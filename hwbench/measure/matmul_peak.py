"""The device's measured dense-matmul FLOP/s: a denominator for MFU on every device, beside the datasheet's.

A product of two n x n matrices (n from 1024, doubled until one product takes ``CALL_SECONDS``, up to
``MAX_SIZE``) is timed in ``ROUNDS`` rounds at the run's dtype, float32 matmul precision and CPU threads, before
training (off the clock); the fastest round is the peak. It is the rate this device reaches on one large, friendly
kernel with this software, not the silicon's limit: the datasheet's peak (``peaks.py``) is that, where one is known.

Kept per machine and setting (``hwbench.record.kept``): a sweep's jobs run in separate processes, even on nodes
sharing a home folder, and pay for the probe once. A kept peak over ``RECHECK_FACTOR`` times what one product at its
size reaches now (a quick re-check, two products) is dropped with one line and measured again.

A peak probed on a busy machine would understate it for every later job: a probe whose CPU threads did not get
their cores, or that shared its GPU with another process, is flagged (``MeasuredPeak.noise``) and never kept. A
kept peak that a training run then beats is wrong: the record drops it and the file is deleted (``forget_peak``,
called by ``FlopsAndPeak.drop_beaten_peak``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import Tensor

from hwbench.devices import available_cores, process_cpu_seconds, starved, synchronize
from hwbench.measure.gpu_load import GpuLoad
from hwbench.record.fingerprint import cpu_description
from hwbench.record.kept import forget, keep, kept_file, locked, read_kept
from hwbench.record.parts import MeasuredPeak

log = logging.getLogger(__name__)
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MIN_SIZE = 1024  # large for any device: where BLAS libraries run at their full rate on a few cores
MAX_SIZE = {"cpu": 4096}  # a CPU's large product: seconds on a laptop core at 4096; any other device: 8192
CALL_SECONDS = 0.02  # one product at least this long: big enough to run at the rate the device sustains
ROUND_SECONDS = 0.05  # each timed round: at least this long, whole products
ROUNDS = 5
RECHECK_FACTOR = 10  # a kept peak this many times what one product reaches now is not this machine's (a poisoned file)


def matmul_flops(size: int) -> int:
    """FLOPs of one ``size`` x ``size`` by ``size`` x ``size`` product: a multiply and an add per term."""
    return 2 * size**3


def product(a: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """The probe's kernel: one dense matmul into a kept output (no allocation on the clock)."""
    return torch.mm(a, b, out=out)


def operands(size: int, precision: str, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    a, b = (torch.rand(size, size, dtype=DTYPES[precision], device=device) for _ in range(2))
    return a, b, torch.empty_like(a)


def seconds_of(calls: int, mats: tuple[Tensor, Tensor, Tensor], device: torch.device,
               clock: Callable[[], float] = time.perf_counter) -> float:  # fmt: skip
    """Seconds for ``calls`` products, the device synchronized at both ends."""
    synchronize(device)
    start = clock()
    for _ in range(calls):
        product(*mats)
    synchronize(device)
    return clock() - start


def grown_operands(precision: str, device: torch.device) -> tuple[tuple[Tensor, Tensor, Tensor], float]:
    """Operands of the smallest size whose product takes ``CALL_SECONDS`` (or the largest allowed, or the largest
    that fits in memory), and one product's seconds at that size."""
    size, mats = MIN_SIZE, operands(MIN_SIZE, precision, device)
    seconds_of(1, mats, device)  # the first call sets up the library's handles and kernels
    call = seconds_of(1, mats, device)
    while call < CALL_SECONDS and size < MAX_SIZE.get(device.type, 8192):
        try:
            bigger = operands(size * 2, precision, device)
            seconds_of(1, bigger, device)
        except torch.OutOfMemoryError:  # the job's data fills the device: the last size that fitted
            break
        size, mats = size * 2, bigger
        call = seconds_of(1, mats, device)
    return mats, call


def others_on_gpu(device: torch.device) -> list[str]:
    """Why a GPU probe's rate is not the device's: other processes on it (NVML's list; none read without NVML)."""
    load = GpuLoad(device) if device.type == "cuda" else None
    others = load.other_processes({os.getpid()}) if load and load.handle is not None else set()
    return [f"other GPU processes: {', '.join(sorted(others))}"] if others else []


def measure_matmul_peak(device: torch.device, precision: str) -> MeasuredPeak:
    """The fastest of ``ROUNDS`` timed rounds of products, at the precision class ``precision`` (fp32, tf32, bf16,
    fp16) and torch's current threads and float32 matmul precision; flagged where other load shared the device."""
    started = time.perf_counter()
    mats, call = grown_operands(precision, device)
    calls = max(1, math.ceil(ROUND_SECONDS / max(call, 1e-9)))
    cpu, wall = process_cpu_seconds(), time.perf_counter()
    best = min(seconds_of(calls, mats, device) for _ in range(ROUNDS))
    threads = torch.get_num_threads()
    if device.type == "cpu":
        noise = starved(process_cpu_seconds() - cpu, time.perf_counter() - wall, threads)
    else:
        noise = others_on_gpu(device)
    size = mats[0].shape[0]
    return MeasuredPeak(
        flops_per_sec=matmul_flops(size) * calls / best, precision=precision, size=size, calls=calls,
        round_seconds=best, rounds=ROUNDS, threads=threads, seconds=time.perf_counter() - started,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), noise=noise,
    )  # fmt: skip


def probe_key(device: torch.device, precision: str) -> dict[str, str | int]:
    """What the measured rate depends on: the machine, the device, the software, the precision, the threads."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description()
    return {"host": socket.gethostname(), "device": f"{device.type}: {name}", "torch": torch.__version__,
            "precision": precision, "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "threads": torch.get_num_threads()}  # fmt: skip


def cache_file(key: dict[str, str | int]) -> Path:
    return kept_file("matmul-peak", key)


def forget_peak(device: torch.device, precision: str, why: str) -> None:
    """Delete the kept peak for these settings, if there is one: the next job probes again."""
    forget(cache_file(probe_key(device, precision)), why)


def matmul_peak(device: torch.device, precision: str) -> MeasuredPeak | str:
    """The device's measured matmul peak at the run's settings, from the cache or probed now; or why there is none."""
    key = probe_key(device, precision)
    path = cache_file(key)
    with locked(path) as held:
        kept = plausible(read_kept(path, key, MeasuredPeak), device, precision, path) if held else None
        peak = kept.model_copy(update={"cached": True, "seconds": 0.0}) if kept else None
        peak = peak or probed(device, precision, path if held else None, key)
    if isinstance(peak, str):
        log.warning(peak)
    elif peak.noise:
        log.warning(f"the matmul peak was probed on a busy machine ({'; '.join(peak.noise)}): no MFU against it, "
                    f"and it is not kept: the next job probes again")  # fmt: skip
    else:
        how = f"kept from {peak.measured_at}" if peak.cached else f"measured in {peak.seconds:.1f} s"
        log.info(f"matmul peak: {peak.flops_per_sec / 1e9:,.0f} GFLOP/s at {peak.precision} ({peak.size}x{peak.size} "
                 f"products, {peak.threads} threads; {how})")  # fmt: skip
    return peak


def plausible(peak: MeasuredPeak | None, device: torch.device, precision: str, path: Path) -> MeasuredPeak | None:
    """A kept peak this device can reach; one it cannot (a size the probe never uses, a rate over ``RECHECK_FACTOR``
    times one product's now) is named in one line and its file deleted: None, and the caller probes again."""
    if peak is None:
        return None
    n = peak.size
    if MIN_SIZE <= n <= MAX_SIZE.get(device.type, 8192):
        now = one_product_rate(n, precision, device)
        if peak.flops_per_sec <= RECHECK_FACTOR * now:
            return peak
        why = (f"the kept matmul peak ({peak.flops_per_sec:.3g} FLOP/s) is over {RECHECK_FACTOR}x what one {n}x{n} "
               f"product reaches now ({now:.3g} FLOP/s)")  # fmt: skip
    else:
        why = f"the kept matmul peak is for {n}x{n} products, a size the probe never uses"
    log.warning(f"{why}: it is not this machine's; dropped and measured again")
    with contextlib.suppress(OSError):  # a probe on a busy machine is not kept: the bad file must go anyway
        path.unlink()
    return None


def one_product_rate(size: int, precision: str, device: torch.device) -> float:
    """FLOP/s of one product, after one to warm up. On a CPU, at the share of their cores its threads got: other
    load on the machine must not make a good kept peak look impossible."""
    mats = operands(size, precision, device)
    seconds_of(1, mats, device)  # the first call sets up the library's handles
    cpu = process_cpu_seconds()
    seconds = seconds_of(1, mats, device)
    if device.type == "cpu":  # the seconds it would have taken on its cores alone (os.times ticks: 10 ms)
        seconds = min(seconds, (process_cpu_seconds() - cpu) / min(torch.get_num_threads(), available_cores()))
    return matmul_flops(size) / max(seconds, 1e-9)


def probed(device: torch.device, precision: str, path: Path | None, key: dict[str, str | int]) -> MeasuredPeak | str:
    try:
        peak = measure_matmul_peak(device, precision)
    except RuntimeError as err:  # a dtype this device cannot multiply, or no memory even for the smallest
        return f"the matmul probe failed at {precision} on {device.type}: {str(err).splitlines()[0]}"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()  # hand the probe's blocks back: the job's memory figures are its own
    if path is not None and not peak.noise:  # a busy machine's rate is not this machine's
        keep(path, key, peak)
    return peak
