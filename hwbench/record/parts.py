"""The typed parts a results record is assembled from: each measuring callback returns its own.

Unknown fields are refused everywhere: a misspelled field fails validation, never rides along in the record.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Rate = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # a speed is a finite, non-negative number
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Milliseconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Accuracy = Annotated[float, Field(ge=0, le=1)]
Percent = Annotated[float, Field(ge=0, le=100)]
Loss = float  # NaN and inf allowed: that is what a diverged run's loss is


class Part(BaseModel):
    """A typed part of the record. Unknown fields are refused: a misspelled one fails, never rides along.
    NaN is written as "NaN", which json reads back."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class Gpu(Part):
    """One of the machine's GPUs, as torch reports it."""

    name: str
    memory_gb: float | None = None
    capability: str | None = None


class Rates(Part):
    """Throughput over a window of training steps (Lightning's ``Throughput``); MFU where the peak is known."""

    samples_per_sec: Rate
    batches_per_sec: Rate
    flops_per_sec: Rate | None = None
    mfu: Rate | None = None


class Epoch(Part):
    """One finished epoch: its seconds, the training seconds so far (validation excluded), losses, accuracies."""

    epoch: int
    seconds: Seconds
    train_seconds: Seconds
    samples_per_sec: Rate | None = None
    samples: int | None = None  # training images of the epoch, all ranks together
    train_loss: Loss | None = None
    train_acc: Accuracy | None = None
    val_loss: Loss | None = None
    val_acc: Accuracy | None = None


class Fingerprint(Part):
    """The machine that ran (hwbench/record/fingerprint.py): host, CPU, GPUs, software versions.

    The fields compare reads are required; the others may be missing from older records."""

    host: str
    cpu: str
    threads: int
    accelerator: str
    precision: str
    gpus: list[Gpu] = []
    os: str | None = None
    physical_cores: int | None = None
    logical_cores: int | None = None
    ram_gb: float | None = None
    driver: str | None = None
    cuda: str | None = None
    cudnn: int | None = None
    python: str | None = None
    torch: str | None = None
    lightning: str | None = None
    cpu_isa: str | None = None  # the widest vector ISA torch's CPU kernels use here: AVX2, AVX512, ...
    cpu_kernels: dict[str, str] | None = None  # CPU runs: the kernel each kind of layer ran (see CpuKernels)


class Metrics(Part):
    test_acc: Accuracy
    test_loss: Loss


class Flops(Part):
    forward: int
    train: int


class Inference(Part):
    batch_size: int
    samples_per_sec: Rate
    latency_ms_p50: Seconds
    latency_ms_p90: Seconds
    flops_per_sec: Rate | None = None


class Resources(Part):
    """Memory and energy; a counter this machine lacks is named in its ``*_unavailable`` field."""

    peak_host_rss_mb: Rate | None = None
    peak_host_rss_scope: str | None = None  # "job", or "process" where the OS cannot reset the peak
    gpu_peak_allocated_mb: Rate | None = None
    gpu_peak_reserved_mb: Rate | None = None
    energy_seconds: Seconds | None = None  # the training steps' window the energy covers
    energy_precise: bool | None = None  # False: a window shorter than the counters' update period
    energy_source: Literal["cpu", "gpu"] | None = None  # which counter average_watts and samples_per_joule use
    cpu_energy_j: Rate | None = None  # RAPL: the whole CPU package, other processes included
    cpu_energy_unavailable: str | None = None
    gpu_energy_j: Rate | None = None
    gpu_energy_unavailable: str | None = None
    average_watts: Rate | None = None
    samples_per_joule: Rate | None = None
    gpu_busy_percent: Annotated[float, Field(ge=0, le=100)] | None = None  # GPU time over wall time
    gpu_busy_method: str | None = None  # how it was read (hwbench.measure.gpu_busy.BusyProbe)
    gpu_busy_unavailable: str | None = None


class KernelChoice(Part):
    """How one kind of layer (linear, conv2d, dropout) ran on the CPU, and why that way."""

    kernel: str  # torch (torch's own layer), or the alternative: onednn, channels_last, bytes
    how: Literal["measured", "forced", "only one applies", "compiled"]
    ms_per_step: dict[str, Milliseconds] = {}  # measured: each candidate's median training step (no update)


class CpuKernels(Part):
    """The CPU kernels of the net's layers (hwbench/model/cpu_kernels), chosen before training, off the clock."""

    layers: dict[str, KernelChoice]  # by kind, the kinds the net has
    seconds: Seconds  # the choosing's time; 0 when cached
    cached: bool = False  # taken from a cache its caller kept (a job measures its own: its process is fresh)
    rounds: int  # alternated rounds of timing per candidate

    @property
    def chosen(self) -> dict[str, str]:
        """Each kind's kernel, as the fingerprint names them."""
        return {kind: choice.kernel for kind, choice in self.layers.items()}


class Interruption(Part):
    signal: str
    epochs_finished: int
    steps_finished: int


class ExecutionPart(Part):
    """How the steps executed (hwbench/execution): the strategy, its variant, and its preparation off the clock."""

    kind: str  # eager | compiled | graph | fused
    mode: str | None = None  # the torch.compile mode, where one compiles
    steps_per_graph: int | None = None  # optimizer steps per CUDA-graph replay
    prepare_seconds: Seconds | None = None  # compiling and capturing, before the training clock starts


class Peak(Part):
    """The device's dense peak FLOP/s that MFU divides by, what precision it is for, and where it comes from."""

    flops_per_sec: Rate
    precision: str  # fp32 | tf32 | bf16 | fp16
    source: str


class Training(Part):
    """What the training clock measured (hwbench/measure): epochs, steady and overall throughput, MFU."""

    seconds: Seconds | None = None  # the training loop's own time, validation excluded
    epochs: list[Epoch] = []
    overall: Rates | None = None
    steady: Rates | None = None
    steady_excludes: str | None = None
    partial: bool = False  # the figures cover only the epochs that finished
    flops_per_sample: Flops | None = None
    peak: Peak | None = None
    mfu_unavailable: str | None = None
    time_to_val_acc: dict[str, Seconds | None] = {}


class JobProcess(Part):
    """The process the job ran in (hwbench/job/process.py): a fresh interpreter of its own, started off every clock."""

    pid: int
    start_seconds: Seconds | None = None  # from starting the interpreter to the job's start (imports, config)
    shared: str | None = None  # why the job ran in a process it shares with its caller; None: a fresh one
    died: str | None = None  # how the job process died, where it did: "killed by SIGSEGV", "exit 139"


# When a run is noisy (MachineLoad.noise): these thresholds, set here only; the README documents them.
OTHERS_CPU_PERCENT_ABOVE = 10.0  # CPU time of processes outside the job, in % of all the cores' time
STEAL_PERCENT_ABOVE = 5.0  # the hypervisor's steal, in % of all the cores' time
# and on a GPU: any other process on the job's device, any thermal or power throttling of it in the window


class MachineLoad(Part):
    """The machine's other load over the timed training window (hwbench/measure/machine_load.py): is the figure
    the hardware's alone? A figure that could not be read is None, and ``unavailable`` says why."""

    window_seconds: Seconds  # the training epochs the figures cover (their validation included: the job's own)
    cores: int  # the logical CPUs the job may run on (its affinity): the percentages are of their time
    others_cpu_percent: Percent | None = None  # processes outside this job's process tree, on those CPUs
    steal_percent: Percent | None = None  # time the hypervisor gave this VM's CPUs to others
    load_average: Annotated[float, Field(ge=0)] | None = None  # 1 minute, at the window's end: the job's included
    cpu_mhz: Rate | None = None  # the CPUs' mean current clock, over the window's edges
    gpu_other_processes: list[str] | None = None  # on the job's GPU, seen at the window's edges: "pid 42 (python)"
    gpu_throttled_seconds: dict[str, Seconds] | None = None  # "power", "thermal": NVML's violation counters
    gpu_throttle_reasons: list[str] | None = None  # NVML's thermal and power clock-event reasons at the edges
    unavailable: str | None = None  # what could not be read here, and why

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
        return reasons
