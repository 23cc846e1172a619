"""The machine a run ran on, and the process: its fingerprint, the job's own process, and how busy the machine was
while the training was timed. Parts of the record, as typed and capped as the others (``parts.py``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from hwbench.record.parts import Name, Part, Percent, Rate, Seconds, Text
from hwbench.record.thresholds import CANARY_CHANGE_ABOVE, OTHERS_CPU_PERCENT_ABOVE, STEAL_PERCENT_ABOVE


class Gpu(Part):
    """One of the machine's GPUs, as torch reports it."""

    name: Name
    memory_gb: float | None = None
    capability: Name | None = None


class Fingerprint(Part):
    """The machine that ran (hwbench/record/fingerprint.py): host, CPU, GPUs, software versions.

    The fields compare reads are required; the others may be missing from older records."""

    host: Name
    cpu: Name
    threads: int
    accelerator: Name
    precision: Name
    gpus: list[Gpu] = Field(default_factory=list)
    os: Name | None = None
    physical_cores: int | None = None
    logical_cores: int | None = None
    usable_cores: int | None = None  # those this process may use (its CPU affinity): threads beyond are oversubscribed
    ram_gb: float | None = None
    driver: Name | None = None
    cuda: Name | None = None
    cudnn: int | None = None
    python: Name | None = None
    torch: Name | None = None
    lightning: Name | None = None
    cpu_isa: Name | None = None  # the widest vector ISA torch's CPU kernels use here: AVX2, AVX512, ...


class JobProcess(Part):
    """The process the job ran in (launch/process.py): a fresh one of its own, started off every clock."""

    pid: int
    start_seconds: Seconds | None = None  # from asking for its start to the job's start (fork or imports, config)
    started_by: Literal["template", "exec"] | None = None  # forked from the template, or a new interpreter
    exec_reason: Text | None = None  # why a new interpreter and not the template
    inherited: list[Text] = Field(default_factory=list)  # what a forked job found that a new one would not: none
    shared: Text | None = None  # why the job ran in a process it shares with its caller; None: a fresh one
    died: Text | None = None  # how the job process died, where it did: "killed by SIGSEGV", "exit 139"


class MachineLoad(Part):
    """The machine's other load over the timed training window (hwbench/measure/machine_load.py): is the figure
    the hardware's alone? A figure that could not be read is None, and ``unavailable`` says why."""

    window_seconds: Seconds  # the training epochs the figures cover (their validation included: the job's own)
    cores: int  # the logical CPUs the job may run on (its affinity): the percentages are of their time
    others_cpu_percent: Percent | None = None  # processes outside this job's process tree, on those CPUs
    steal_percent: Percent | None = None  # time the hypervisor gave this VM's CPUs to others
    load_average: Annotated[float, Field(ge=0)] | None = None  # 1 minute, at the window's end: the job's included
    cpu_mhz: Rate | None = None  # the CPUs' mean current clock, over the window's edges
    gpu_other_processes: list[Name] | None = None  # on the job's GPU, seen at the window's edges: "pid 42 (python)"
    gpu_throttled_seconds: dict[Name, Seconds] | None = None  # "power", "thermal": NVML's violation counters
    gpu_throttle_reasons: list[Name] | None = None  # NVML's thermal and power clock-event reasons at the edges
    # the canary (hwbench/measure/canary.py): a small fixed matmul's FLOP/s just before and just after the window
    canary_before_gflops: Rate | None = None
    canary_after_gflops: Rate | None = None
    unavailable: Text | None = None  # what could not be read here, and why

    @property
    def noise(self) -> list[str]:
        """Why the run is noisy, each reason in a few words; empty for a quiet one."""
        reasons = []
        if self.others_cpu_percent is not None and self.others_cpu_percent > OTHERS_CPU_PERCENT_ABOVE:
            reasons.append(f"other processes used {self.others_cpu_percent:.0f}% of the {self.cores} cores")
        if self.steal_percent is not None and self.steal_percent > STEAL_PERCENT_ABOVE:
            reasons.append(f"the hypervisor stole {self.steal_percent:.0f}% of the CPU time")
        if self.gpu_other_processes:
            reasons.append(f"other GPU processes: {', '.join(self.gpu_other_processes)}")
        throttled = {k: v for k, v in (self.gpu_throttled_seconds or {}).items() if v > 0}
        if throttled:
            reasons.append("GPU throttled: " + ", ".join(f"{k} {v:.2f} s" for k, v in throttled.items()))
        elif self.gpu_throttle_reasons:
            reasons.append(f"GPU throttled: {', '.join(self.gpu_throttle_reasons)}")
        if (change := self.canary_change) is not None and abs(change) > CANARY_CHANGE_ABOVE:
            reasons.append(f"the machine ran {abs(change):.0%} {'slower' if change < 0 else 'faster'} after training "
                           f"than before (canary {self.canary_before_gflops:,.1f} then "
                           f"{self.canary_after_gflops:,.1f} GFLOP/s)")  # fmt: skip
        return reasons

    @property
    def canary_change(self) -> float | None:
        """The canary's rate after the window over before it, less 1: -0.24 is 24% slower after."""
        before, after = self.canary_before_gflops, self.canary_after_gflops
        return after / before - 1 if before and after is not None else None
