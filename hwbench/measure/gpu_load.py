"""Who else used the job's GPU, and was it throttled: NVML's process list and its throttling counters.

The counters (``nvmlDeviceGetViolationStatus``: nanoseconds spent below the requested clocks for power or
thermal reasons) cover the whole window; where a GPU lacks them, the clock-event reasons are read at the window's
edges instead. The process list is read at the edges.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import psutil
import torch

THROTTLE_POLICIES = {"power": 0, "thermal": 1}  # NVML_PERF_POLICY_POWER, NVML_PERF_POLICY_THERMAL
THROTTLE_REASONS = {  # nvmlClocksEventReason*: the thermal and power ones
    0x04: "software power cap", 0x08: "hardware slowdown", 0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown", 0x80: "hardware power brake",
}  # fmt: skip


def nvml_handle(device: torch.device) -> Any:
    """NVML's handle of a torch CUDA device (by UUID: NVML's indices ignore CUDA_VISIBLE_DEVICES); raises where
    NVML cannot be used."""
    import pynvml

    pynvml.nvmlInit()
    uuid = str(torch.cuda.get_device_properties(device).uuid)
    return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")


def process_name(pid: int) -> str:
    """'pid 42 (python)': the name as printable text (anyone names a process; it reaches a terminal)."""
    try:
        name = psutil.Process(pid).name()
    except psutil.Error:
        return f"pid {pid}"
    return f"pid {pid} ({''.join(c if c.isprintable() else '?' for c in name)[:40]})"


class GpuLoad:
    """Other processes on one GPU and its throttling, over windows read at their edges."""

    def __init__(self, device: torch.device) -> None:
        self.others: set[str] = set()
        self.throttled: dict[str, float] | None = {k: 0.0 for k in THROTTLE_POLICIES}
        self.reasons: set[str] = set()
        self.unavailable: list[str] = []
        self.start: dict[str, int] = {}
        try:
            self.handle = nvml_handle(device)
        except Exception as err:  # no driver, no NVML: a GPU that is not NVIDIA's
            self.handle = None
            self.unavailable.append(f"no NVML reading of the GPU ({err}): no other GPU processes or throttling read")

    def violations(self) -> dict[str, int] | None:
        """Nanoseconds throttled so far, by cause; None where the GPU has no such counters."""
        import pynvml

        try:
            return {k: pynvml.nvmlDeviceGetViolationStatus(self.handle, p).violationTime
                    for k, p in THROTTLE_POLICIES.items()}  # fmt: skip
        except pynvml.NVMLError:
            return None

    def edge(self, job_pids: Collection[int], start: bool) -> None:
        """A window's start or end: the processes on the GPU, and the throttling counters or reasons."""
        if self.handle is None:
            return
        self.others |= self.other_processes(job_pids)
        counters = self.violations() if self.throttled is not None else None
        if counters is None:  # none here: the reasons at this instant
            self.throttled = None
            self.read_reasons()
        elif start:
            self.start = counters
        elif self.throttled is not None and self.start:
            for k, ns in counters.items():
                self.throttled[k] += max(0, ns - self.start[k]) / 1e9

    def read_reasons(self) -> None:
        import pynvml

        try:
            mask = pynvml.nvmlDeviceGetCurrentClocksEventReasons(self.handle)
        except pynvml.NVMLError as err:
            self.unavailable.append(f"NVML throttling: {err}")
            return
        self.reasons |= {name for bit, name in THROTTLE_REASONS.items() if mask & bit}

    def other_processes(self, job_pids: Collection[int]) -> set[str]:
        """The GPU's processes outside the job. In a container NVML may give the host's PIDs: where none of them
        is the job's, the job's own process is among them unnamed, and the others are counted, not named."""
        import pynvml

        try:
            listed = [*pynvml.nvmlDeviceGetComputeRunningProcesses(self.handle),
                      *pynvml.nvmlDeviceGetGraphicsRunningProcesses(self.handle)]  # fmt: skip
        except pynvml.NVMLError as err:
            self.unavailable.append(f"NVML processes: {err}")
            return set()
        pids = {p.pid for p in listed}
        if pids and not pids & set(job_pids):  # one of them is the job's
            return {f"{len(pids) - 1} unnamed (PIDs of another namespace)"} if len(pids) > 1 else set()
        return {process_name(pid) for pid in pids - set(job_pids)}

    def figures(self) -> dict[str, Any]:
        """The part's GPU figures."""
        if self.handle is None:
            return {}
        figures: dict[str, Any] = {"gpu_other_processes": sorted(self.others)}
        if self.throttled is not None:
            figures["gpu_throttled_seconds"] = self.throttled
        else:
            figures["gpu_throttle_reasons"] = sorted(self.reasons)
        return figures
