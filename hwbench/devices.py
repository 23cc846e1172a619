"""Which accelerator a job runs on, and the backend settings that go with it."""

from __future__ import annotations

import ctypes
import os

import torch
from omegaconf import DictConfig
from threadpoolctl import threadpool_limits

from hwbench.errors import DeviceUnavailable


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


def configure_backend(device: DictConfig) -> int:
    """Apply thread count, matmul precision and cuDNN autotuning; return the CPU threads in use."""
    threads = device.threads or available_cores()
    torch.set_num_threads(threads)
    # numpy (loaded by TensorBoard and matplotlib) brings OpenBLAS, whose idle threads spin and take the
    # cores torch is being timed on (seen: a 2-thread CPU run 30x slower); hwbench never needs it parallel
    threadpool_limits(limits=1, user_api="blas")
    keep_freed_host_memory()
    torch.set_float32_matmul_precision(device.matmul_precision)
    torch.backends.cudnn.benchmark = device.cudnn_benchmark
    return threads


def keep_freed_host_memory() -> None:
    """Keep freed CPU tensors in the process's heap for the next step, as CUDA's caching allocator does.

    glibc gives big freed blocks (a CNN's activations) back to the OS, and the next step page-faults
    them back in: profiled, ReLU's backward ran 2-4x slower under hwbench than in a hand loop because of
    it (the heap differs after validation). Raising the mmap threshold to glibc's maximum (32 MiB) and the
    trim threshold keeps them; the PyTorch CPU tuning guide's advice (jemalloc/tcmalloc) does the same
    but needs a preloaded library. A no-op off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # macOS, Windows, musl: leave their allocators alone
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    libc.mallopt(m_mmap_threshold, 32 * 2**20)
    libc.mallopt(m_trim_threshold, 2**30)
