"""The device's measured dense-matmul FLOP/s: a denominator for MFU on every device, beside the datasheet's.

A product of two n x n matrices (n from 1024, doubled until one product takes ``CALL_SECONDS``, up to
``MAX_SIZE``) is timed in ``ROUNDS`` rounds at the run's dtype, float32 matmul precision and CPU threads, before
training (off the clock); the fastest round is the peak. It is the rate this device reaches on one large, friendly
kernel with this software, not the silicon's limit: the datasheet's peak (``peaks.py``) is that, where one is known.

Kept per machine and setting in a small JSON file under ``$HWBENCH_CACHE`` (else ``~/.cache/hwbench``): a sweep's
jobs may run in separate processes, even on nodes sharing a home folder, and pay for the probe once. A lock makes
jobs that start together wait for one probe. Delete the file to measure again. The file is input like any other: a
kept peak is read strictly, and one over ``RECHECK_FACTOR`` times what one product at its size reaches now (a
quick re-check, two products) is dropped with one line and measured again.

A peak probed on a busy machine would understate it for every later job: a probe whose CPU threads did not get
their cores, or that shared its GPU with another process, is flagged (``MeasuredPeak.noise``) and never kept. A
kept peak that a training run then beats is wrong: the record drops it and the file is deleted (``forget``, called
by ``FlopsAndPeak.drop_beaten_peak``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from pydantic import ValidationError
from torch import Tensor

from hwbench.devices import available_cores, synchronize
from hwbench.measure.gpu_load import GpuLoad
from hwbench.record.fingerprint import cpu_description
from hwbench.record.parts import MeasuredPeak

log = logging.getLogger(__name__)
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MIN_SIZE = 1024  # large for any device: where BLAS libraries run at their full rate on a few cores
MAX_SIZE = {"cpu": 4096}  # a CPU's large product: seconds on a laptop core at 4096; any other device: 8192
CALL_SECONDS = 0.02  # one product at least this long: big enough to run at the rate the device sustains
ROUND_SECONDS = 0.05  # each timed round: at least this long, whole products
ROUNDS = 5
LOCK_SECONDS = 300  # longest wait for another job's probe before probing anyway
RECHECK_FACTOR = 10  # a kept peak this many times what one product reaches now is not this machine's (a poisoned file)
STARVED_BELOW = 0.8  # a CPU probe's threads got less than this share of their cores' time: others took the rest


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


def process_cpu_seconds() -> float:
    """This process's CPU time so far, all its threads together."""
    t = os.times()
    return t.user + t.system


def starved(cpu_seconds: float, wall_seconds: float, threads: int) -> list[str]:
    """Why a CPU probe's rate is not the machine's: its threads had less than ``STARVED_BELOW`` of their cores
    (of the cores this process may use, where it has more threads than those)."""
    share = cpu_seconds / max(wall_seconds * min(threads, available_cores()), 1e-9)
    if share >= STARVED_BELOW:
        return []
    return [f"the probe's {threads} thread(s) got {share:.0%} of their cores' time: other load took the rest"]


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


def cache_dir() -> Path:
    """``$HWBENCH_CACHE``, else the XDG cache folder's hwbench/ (by hand: one folder is not worth a dependency)."""
    if folder := os.environ.get("HWBENCH_CACHE"):
        return Path(folder)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hwbench"


def cache_file(key: dict[str, str | int]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"matmul-peak-{digest}.json"


def cached_peak(path: Path, key: dict[str, str | int]) -> MeasuredPeak | None:
    """The peak kept at ``path`` for ``key``; None when there is none, or it is unreadable or for another key."""
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        if kept.get("key") != key:
            return None
        peak = MeasuredPeak.model_validate(kept["peak"], strict=True)  # strict: "1e39" is no number
        return peak.model_copy(update={"cached": True, "seconds": 0.0})
    except (OSError, ValueError, KeyError, AttributeError, ValidationError):
        return None


def keep(path: Path, key: dict[str, str | int], peak: MeasuredPeak) -> None:
    """Write the peak whole or not at all (a temporary file renamed over the old one); a cache that cannot be
    written costs the next job a probe, never this job its record."""
    try:
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
            json.dump({"key": key, "peak": peak.model_dump(mode="json")}, f, indent=1)
        os.replace(f.name, path)
    except OSError as err:
        log.warning("the measured matmul peak is not kept (%s): the next job measures it again", err)


def forget(device: torch.device, precision: str, why: str) -> None:
    """Delete the kept peak for these settings, if there is one (the next job probes again), saying why."""
    path = cache_file(probe_key(device, precision))
    try:
        path.unlink()
    except FileNotFoundError:  # never kept (a busy probe's), or deleted already
        return
    except OSError as err:
        log.warning("the kept matmul peak %s could not be deleted (%s): delete it by hand", path, err)
        return
    log.warning("%s: the kept matmul peak is deleted; the next job probes again", why)


def matmul_peak(device: torch.device, precision: str) -> MeasuredPeak | str:
    """The device's measured matmul peak at the run's settings, from the cache or probed now; or why there is none."""
    key = probe_key(device, precision)
    path = cache_file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{path}.lock", timeout=LOCK_SECONDS):
            peak = plausible(cached_peak(path, key), device, precision, path) or probed(device, precision, path, key)
    except (OSError, Timeout) as err:  # no cache folder, or another job's probe hangs: probe without the cache
        log.warning("no matmul peak cache (%s): probing without it", err)
        peak = probed(device, precision, None, key)
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
