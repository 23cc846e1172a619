"""The canary: a small fixed matmul timed just before and just after the timed training, off the clock.

A virtual machine has slow phases of minutes that no counter in /proc shows (others' CPU under 1%, steal near 0):
a run can pass for quiet while running 30% slow. The same small product at the same threads, timed on both sides
of the window, sees the machine change: past ``CANARY_CHANGE_ABOVE`` the run is noisy (hwbench.record.machine).
"""

from __future__ import annotations

import statistics
import time

import torch

from hwbench.measure.matmul_peak import matmul_flops, operands, seconds_of

SIZE = {"cpu": 256}  # a fraction of a millisecond a product on a CPU core; any other device: 1024
WARM_SECONDS = 0.05  # products before timing: threads awake, clocks up
ROUND_SECONDS = 0.01
ROUNDS = 20


def canary_gflops(device: torch.device) -> float:
    """The median rate of ``ROUNDS`` rounds of fixed-size products, at torch's current threads, in GFLOP/s."""
    size = SIZE.get(device.type, 1024)
    mats = operands(size, "fp32", device)
    started = time.perf_counter()
    while time.perf_counter() - started < WARM_SECONDS:
        seconds_of(1, mats, device)
    calls = max(1, round(ROUND_SECONDS / max(seconds_of(1, mats, device), 1e-9)))
    rates = [matmul_flops(size) * calls / seconds_of(calls, mats, device) for _ in range(ROUNDS)]
    return statistics.median(rates) / 1e9
