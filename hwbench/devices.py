"""The accelerator a job runs on, and the torch and host settings that go with it."""

from __future__ import annotations

import ctypes
import logging
import os

import torch
from omegaconf import DictConfig
from threadpoolctl import threadpool_limits

from hwbench.errors import DeviceUnavailable

log = logging.getLogger(__name__)

STARVED_BELOW = 0.8  # a measurement's threads got less than this share of their cores' time: others took the rest


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_accelerator(requested: str) -> str:
    """'cuda', 'mps' or 'cpu'; 'auto' picks this machine's accelerator, else the CPU.

    A requested accelerator the machine lacks raises DeviceUnavailable (a sweep records a skip).
    """
    present = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    present_type = present.type if present is not None else "cpu"
    if requested == "auto":
        return present_type
    if requested not in ("cpu", present_type):
        raise DeviceUnavailable(
            f"no {requested.upper()} device: pick a device this machine has (device=cpu or device=auto)"
        )
    return requested


def synchronize(torch_device: torch.device) -> None:
    """Wait for the device's queued kernels, so that a clock read afterwards is true."""
    if torch_device.type != "cpu":
        torch.accelerator.synchronize(torch_device)


def configure_torch(device_cfg: DictConfig) -> int:
    """Apply the device config's thread count, float32 matmul and convolution precision and cuDNN autotuning;
    return the CPU threads."""
    # DDP on one machine: the ranks share its cores (Lightning's own split, which it applies unless OMP is set)
    processes = device_cfg.get("devices", 1)
    threads = device_cfg.threads or max(1, available_cores() // processes)
    if warning := oversubscribed(threads, processes):
        log.warning(warning)
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(device_cfg.matmul_precision)
    # convolutions too: cuDNN takes TF32 for float32 by default, whatever the matmul precision says
    torch.backends.cudnn.allow_tf32 = device_cfg.matmul_precision != "highest"
    torch.backends.cudnn.benchmark = device_cfg.cudnn_benchmark
    return threads


def oversubscribed(threads: int, processes: int) -> str | None:
    """The warning for more threads than cores (sometimes wanted: the record keeps fingerprint.usable_cores)."""
    cores = available_cores()
    if threads * processes <= cores:
        return None
    asked = f"device.threads={threads}" if processes == 1 else f"{processes} ranks of {threads} thread(s)"
    return (f"{asked} is more than the {cores} cores this process may use: the threads take turns on the cores, "
            f"and the figures measure that")  # fmt: skip


def quiet_blas_threads() -> None:
    """numpy (loaded by TensorBoard and matplotlib) brings OpenBLAS, whose idle threads spin on the cores torch
    is timed on (see the README's overhead notes); hwbench never needs it parallel."""
    threadpool_limits(limits=1, user_api="blas")


def keep_freed_host_memory() -> None:
    """Keep freed CPU tensors in the heap for the next step, as CUDA's caching allocator does on a GPU.

    glibc hands big freed blocks (a CNN's activations) back to the OS and page-faults them in again on the
    next step; raising its mmap and trim thresholds (mallopt) keeps them. A no-op off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # macOS, Windows, musl: leave their allocators alone
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    libc.mallopt(m_mmap_threshold, 32 * 2**20)
    libc.mallopt(m_trim_threshold, 2**30)


def process_cpu_seconds() -> float:
    """This process's CPU time so far, all its threads together."""
    t = os.times()
    return t.user + t.system


def starved(cpu_seconds: float, wall_seconds: float, threads: int) -> list[str]:
    """Why a CPU measurement is not the machine's: its threads had less than ``STARVED_BELOW`` of their cores
    (of the cores this process may use, where it has more threads than those)."""
    share = cpu_seconds / max(wall_seconds * min(threads, available_cores()), 1e-9)
    if share >= STARVED_BELOW:
        return []
    return [f"the measurement's {threads} thread(s) got {share:.0%} of their cores' time: other load took the rest"]
