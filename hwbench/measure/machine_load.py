"""Was the machine quiet while the training was timed? The CPU time of processes outside this job, the hypervisor's
steal, the load and the CPUs' clock; on a GPU, other processes on it and its throttling (hwbench.measure.gpu_load).

Read at the edges of each training epoch, off the training clock: this callback comes before the clock's at an
epoch's start and reads at its end after the clock's last mark. The canary (hwbench/measure/canary.py) is timed
before the first epoch and after the last, for what these counters cannot see. The CPU figures are counters over the
whole window (psutil: /proc/stat for the machine, /proc/PID/stat for the job's processes): the machine's busy time
less the job's own is the others'. What makes a run noisy is set in one place: hwbench.record.machine.MachineLoad.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Iterable
from typing import NamedTuple

import psutil
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from hwbench.errors import MachineBusy
from hwbench.measure.canary import canary_gflops
from hwbench.measure.gpu_load import GpuLoad
from hwbench.record.machine import MachineLoad

log = logging.getLogger(__name__)
PROBE_SECONDS = 1.0  # device.require_quiet: how long the machine is watched before training starts
REFUSAL_FIX = ("device.require_quiet=true refuses to time on it: stop the other load, or set "
               "device.require_quiet=false to time anyway (the run is then marked noisy)")  # fmt: skip


class CpuReading(NamedTuple):
    """CPU seconds so far, the job's CPUs together: busy, stolen, elapsed; and the job's own."""

    at: float
    busy: float
    steal: float | None  # None: this OS does not report it
    total: float
    job: float


def job_processes(roots: Iterable[int]) -> tuple[set[int], float]:
    """The job's processes (``roots`` and their descendants: DDP's ranks) and their CPU seconds so far, those of
    the children they have waited for included."""
    pids: set[int] = set()
    seconds = 0.0
    for root in roots:
        try:
            tree = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
        except psutil.Error:  # another node's rank
            continue
        for process in tree:
            if process.pid in pids:
                continue
            try:
                t = process.cpu_times()
            except psutil.Error:  # ended meanwhile
                continue
            pids.add(process.pid)
            seconds += t.user + t.system + t.children_user + t.children_system
    return pids, seconds


def job_cpus(roots: Iterable[int]) -> list[int] | None:
    """The CPUs the job's processes may run on (their affinity; a container's share of a big host): the others'
    load that counts is theirs. None: every CPU (an OS without affinity)."""
    cpus: set[int] = set()
    for root in roots:
        try:
            cpus.update(psutil.Process(root).cpu_affinity())
        except (psutil.Error, AttributeError):  # another node's rank; macOS has no affinity
            continue
    return sorted(cpus) or None


def read_cpu(roots: Iterable[int], cpus: list[int] | None) -> tuple[CpuReading, set[int]]:
    """The machine's counters over ``cpus`` (every CPU: None), and the job's processes and theirs."""
    per_cpu = psutil.cpu_times(percpu=True)
    times = [per_cpu[c] for c in cpus] if cpus and max(cpus) < len(per_cpu) else per_cpu
    busy = steal = total = 0.0
    for t in times:
        cpu_busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)  # guest: in user
        busy += cpu_busy
        steal += getattr(t, "steal", 0.0)
        total += cpu_busy + t.idle + getattr(t, "iowait", 0.0) + getattr(t, "steal", 0.0)
    pids, job = job_processes(roots)
    reported = hasattr(times[0], "steal")  # Linux's /proc/stat has it; other systems do not
    return CpuReading(time.monotonic(), busy, steal if reported else None, total, job), pids


def cpu_mhz() -> float | None:
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):  # AttributeError: psutil has none on this OS
        return None
    return freq.current if freq and freq.current > 0 else None


class LoadWindows:
    """The sums over the windows read so far, and the part they make."""

    def __init__(self, gpu: GpuLoad | None, cpus: list[int] | None) -> None:
        self.gpu, self.cpus = gpu, cpus
        self.seconds, self.busy, self.steal, self.total, self.job = 0.0, 0.0, 0.0, 0.0, 0.0
        self.steal_read = True
        self.mhz: list[float] = []
        self.load: float | None = None  # the 1-minute load at the last window's end
        self.start: CpuReading | None = None

    def edge(self, roots: Collection[int], start: bool) -> None:
        reading, pids = read_cpu(roots, self.cpus)
        if (mhz := cpu_mhz()) is not None:
            self.mhz.append(mhz)
        if self.gpu is not None:
            self.gpu.edge(pids, start)
        if start:
            self.start = reading
            return
        a, b = self.start, reading
        if a is None:
            return
        self.seconds += b.at - a.at
        self.busy += b.busy - a.busy
        self.total += b.total - a.total
        self.job += b.job - a.job
        self.steal_read = self.steal_read and a.steal is not None and b.steal is not None
        self.steal += (b.steal or 0.0) - (a.steal or 0.0)
        self.load = psutil.getloadavg()[0]
        self.start = None

    def part(self) -> MachineLoad | None:
        if self.total <= 0:
            return None
        unavailable = [] if self.steal_read else ["steal: this OS does not report it"]
        if not self.mhz:
            unavailable.append("CPU frequency: not readable here")
        unavailable += self.gpu.unavailable if self.gpu else []
        cores = len(self.cpus) if self.cpus else psutil.cpu_count() or os.cpu_count() or 1
        return MachineLoad(
            window_seconds=self.seconds, cores=cores,
            others_cpu_percent=min(100.0, max(0.0, 100 * (self.busy - self.job) / self.total)),
            steal_percent=min(100.0, 100 * max(0.0, self.steal) / self.total) if self.steal_read else None,
            load_average=self.load, cpu_mhz=sum(self.mhz) / len(self.mhz) if self.mhz else None,
            unavailable="; ".join(dict.fromkeys(unavailable)) or None, **(self.gpu.figures() if self.gpu else {}),
        )  # fmt: skip


def as_markdown(part: MachineLoad) -> str:
    """The part for TensorBoard's text tab: quiet or noisy and why, then each figure."""
    verdict = f"**noisy**: {'; '.join(part.noise)}" if part.noise else "quiet"
    rows = [f"| {k} | {v} |" for k, v in part.model_dump(exclude_none=True).items()]
    return "\n".join([verdict, "", "| figure | value |", "| --- | --- |", *rows])


class MachineLoadCheck(Callback):
    """The machine's other load over the timed training, read by rank 0 for its node. With ``require_quiet`` no
    figure is timed on a busy machine: refused before training starts, failed where the window was noisy."""

    def __init__(self, require_quiet: bool = False, windows: bool = True, canary: bool = True) -> None:
        self.require_quiet, self.watch, self.sings = require_quiet, windows, canary
        self.roots: set[int] = {os.getpid()}  # the job's processes are these and their descendants
        self.device = torch.device("cpu")
        self.windows: LoadWindows | None = None  # rank 0's
        self.canary: dict[str, float] = {}  # rank 0's canary before and after the timed window, in GFLOP/s

    def load_windows(self) -> LoadWindows:
        return LoadWindows(GpuLoad(self.device) if self.device.type == "cuda" else None, job_cpus(self.roots))

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.device = trainer.strategy.root_device
        if trainer.world_size > 1:  # every rank's process: SLURM's ranks are not rank 0's children
            pids = trainer.strategy.all_gather(torch.tensor([os.getpid()], device=self.device))
            self.roots = set(pids.flatten().tolist())
        if trainer.is_global_zero and self.watch:
            self.windows = self.load_windows()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.require_quiet:
            self.refuse_busy(trainer)
        self.sing(trainer, "canary_before_gflops")

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.sing(trainer, "canary_after_gflops")

    def sing(self, trainer: Trainer, key: str) -> None:
        """The canary, timed by rank 0 while the other ranks wait (on a CPU they would share its cores)."""
        if not self.sings:
            return
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            self.canary[key] = canary_gflops(self.device)
        trainer.strategy.barrier()

    def refuse_busy(self, trainer: Trainer) -> None:
        noise: list[str] | None = None
        if trainer.is_global_zero:  # watch the machine a moment, as the training would be watched
            probe = self.load_windows()
            probe.edge(self.roots, start=True)
            time.sleep(PROBE_SECONDS)
            probe.edge(self.roots, start=False)
            noise = part.noise if (part := probe.part()) else []
        if noise := trainer.strategy.broadcast(noise):
            raise MachineBusy(f"the machine is busy ({'; '.join(noise)}, over {PROBE_SECONDS:.0f} s before "
                              f"training): {REFUSAL_FIX}")  # fmt: skip

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.windows is not None:
            self.windows.edge(self.roots, start=True)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.windows is not None:
            self.windows.edge(self.roots, start=False)

    def part(self) -> MachineLoad | None:
        part = self.windows.part() if self.windows else None
        return MachineLoad.model_validate(part.model_dump() | self.canary) if part is not None else None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Once the training's figures are in (its epochs' lines printed): quiet or not, in the log and TensorBoard."""
        part = self.part()
        if part is not None and part.noise:
            log.warning(f"the machine was busy while the training was timed: {'; '.join(part.noise)}")
        board = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)  # its Text tab
        if part is not None and board is not None:
            board.experiment.add_text("machine_load", as_markdown(part), global_step=trainer.global_step)
        if self.require_quiet and (noise := trainer.strategy.broadcast(part.noise if part else [])):
            raise MachineBusy(f"the machine got busy while the training was timed ({'; '.join(noise)}): {REFUSAL_FIX}")

    def record_parts(self) -> dict[str, MachineLoad]:
        part = self.part()
        return {"machine_load": part} if part is not None else {}
