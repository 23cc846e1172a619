"""The typed parts a results record is assembled from: each measuring callback returns its own.

Unknown fields are refused everywhere: a misspelled field fails validation, never rides along in the record.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from hwbench.record.thresholds import UNSTEADY_IQR_OVER_MEDIAN

Rate = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # a speed is a finite, non-negative number
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Milliseconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Accuracy = Annotated[float, Field(ge=0, le=1)]
Percent = Annotated[float, Field(ge=0, le=100)]
# NaN and inf allowed: that is what a diverged run's loss is. Written as "NaN", "Infinity" (ser_json_inf_nan), read
# back as floats even where a record is read strictly: those three words, never another string
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
Loss = Annotated[float, BeforeValidator(lambda v: NON_FINITE.get(v, v) if isinstance(v, str) else v)]

# Strings are capped: a record may come from anyone (hwbench-compare reads it as untrusted input).
# A name longer than this is no name: the record is refused.
MAX_NAME = 256
# Free text hwbench writes from an error (a reason, a traceback) is cut instead: the record must still be written.
MAX_TEXT = 4096
MAX_TRACEBACK = 65536


def clipped(limit: int, keep_end: bool = False) -> AfterValidator:
    """Cut a string to ``limit`` characters, marking the cut (``keep_end``: keep the end, a traceback's last line)."""

    def clip(text: str) -> str:
        if len(text) <= limit:
            return text
        return "…" + text[1 - limit :] if keep_end else text[: limit - 1] + "…"

    return AfterValidator(clip)


Name = Annotated[str, Field(max_length=MAX_NAME)]  # a host, a CPU, a device, a version, a run's name
Text = Annotated[str, clipped(MAX_TEXT)]  # a reason: one line, which may hold paths and values


class Part(BaseModel):
    """A typed part of the record. Unknown fields are refused: a misspelled one fails, never rides along.
    NaN is written as "NaN", which json reads back."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class Rates(Part):
    """Throughput over a window of training steps (Lightning's ``Throughput``); MFU where the peak is known."""

    samples_per_sec: Rate
    batches_per_sec: Rate
    flops_per_sec: Rate | None = None
    mfu: Rate | None = None  # against the datasheet's dense peak (Training.peak)
    mfu_of_measured_peak: Rate | None = None  # against the measured matmul peak (Training.measured_peak)


class SplitFigures(NamedTuple):
    """A split's mean loss and accuracy over an epoch, as the module computed them (all ranks together)."""

    loss: float
    acc: float


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
    blocks: int | None = None  # timed blocks of batches (torch.utils.benchmark's blocked_autorange)
    iqr_over_median: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None  # the blocks' spread


class MemoryFigures(Part):
    """Peak host and GPU memory over the job (hwbench/measure/memory.py)."""

    peak_host_rss_mb: Rate | None = None
    peak_host_rss_scope: Name | None = None  # "job", or "process" where the OS cannot reset the peak
    gpu_peak_allocated_mb: Rate | None = None
    gpu_peak_reserved_mb: Rate | None = None


class EnergyFigures(Part):
    """Energy over the training steps (hwbench/measure/energy.py); a counter this machine lacks is named."""

    energy_seconds: Seconds | None = None  # the training steps' window the energy covers
    energy_precise: bool | None = None  # False: a window shorter than the counters' update period
    energy_source: Literal["cpu", "gpu"] | None = None  # which counter average_watts and samples_per_joule use
    cpu_energy_j: Rate | None = None  # RAPL: the whole CPU package, other processes included
    cpu_energy_unavailable: Text | None = None
    gpu_energy_j: Rate | None = None
    gpu_energy_unavailable: Text | None = None
    average_watts: Rate | None = None
    samples_per_joule: Rate | None = None


class BusyFigures(Part):
    """How busy the GPU was (hwbench/measure/gpu_busy.py): its kernels' time over wall time, and how read."""

    gpu_busy_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    gpu_busy_method: Text | None = None
    gpu_busy_unavailable: Text | None = None


class Resources(BusyFigures, EnergyFigures, MemoryFigures):  # fields in this order: memory, energy, busy
    """Memory, energy and GPU busy time, side by side in the record: each measured by its own callback."""

    @classmethod
    def of(cls, *parts: Part) -> Resources:
        return cls(**{k: v for part in parts for k, v in part.model_dump(exclude_none=True).items()})


class KernelChoice(Part):
    """How one kind of layer (linear, conv2d, dropout) ran on the CPU, and why that way."""

    kernel: Name  # torch (torch's own layer), or the alternative: onednn, channels_last, bytes
    how: Literal["measured", "tie", "forced", "only one applies", "compiled"]  # tie: within the spread, torch's
    ms_per_step: dict[Name, Milliseconds] = {}  # measured: each candidate's median training step (no update)


class CpuKernels(Part):
    """The CPU kernels of the net's layers (hwbench/model/cpu_kernels), chosen before training, off the clock."""

    layers: dict[Name, KernelChoice]  # by kind, the kinds the net has
    seconds: Seconds  # the choosing's time; 0 when cached
    cached: bool = False  # kept from an earlier job on this CPU at the same settings (hwbench.record.kept)
    rounds: int  # alternated rounds of timing per candidate
    measured_at: Name | None = None  # when it was measured (UTC)
    noise: list[Text] = []  # why the timing's cores were not its own (other load): such a choice is not kept

    @property
    def chosen(self) -> dict[str, str]:
        """Each kind's kernel, as the fingerprint names them."""
        return {kind: choice.kernel for kind, choice in self.layers.items()}


class Phases(Part):
    """Where the job's wall time went (job/runner.py); its process's start is ``job.start_seconds``."""

    prepare: Seconds  # all but the other three: config, data, net, kernel choice, peak, canary, compile, capture
    train: Seconds  # the training epochs, warm-up and validation included
    test: Seconds  # the test and the inference timing
    write: Seconds  # the record and the loggers' last figures


class Interruption(Part):
    signal: Name
    epochs_finished: int
    steps_finished: int


class ExecutionPart(Part):
    """How the steps executed (hwbench/execution): the strategy, its variant, and its preparation off the clock."""

    kind: Name  # eager | compiled | graph | fused
    mode: Name | None = None  # the torch.compile mode, where one compiles
    steps_per_graph: int | None = None  # optimizer steps per CUDA-graph replay
    prepare_seconds: Seconds | None = None  # compiling and capturing, before the training clock starts


class Peak(Part):
    """The device's dense peak FLOP/s that MFU divides by, what precision it is for, and where it comes from."""

    flops_per_sec: Rate
    precision: Name  # fp32 | tf32 | bf16 | fp16
    source: Text


class MeasuredPeak(Part):
    """The FLOP/s this device reached on a large dense matmul at the run's settings (hwbench/measure/matmul_peak.py):
    the rate of one friendly kernel with this software, not the silicon's limit. mfu_of_measured_peak divides by it."""

    flops_per_sec: Rate  # the fastest round's
    precision: Name  # fp32 | tf32 | bf16 | fp16: the operands' dtype and float32 matmul precision
    size: int  # n: each product is n x n by n x n, 2 n^3 FLOPs
    calls: int  # products per round
    round_seconds: Seconds  # the fastest round's
    rounds: int
    threads: int  # torch's CPU threads during the probe
    seconds: Seconds  # the probe's time, before training; 0 when cached
    cached: bool = False  # measured by an earlier job on this machine at the same settings, read from disk
    measured_at: Name  # when it was measured (UTC)
    noise: list[Text] = []  # why the probe's device was not its own (other load): the rate understates it


class Stability(Part):
    """The steady-state window timed in sub-windows (hwbench/measure/stability.py): how steady the run was in itself.
    A run whose windows spread more than ``UNSTEADY_IQR_OVER_MEDIAN`` is unsteady: never aggregated by compare."""

    window_rates: list[Rate]  # samples/s of each sub-window, in order
    window_steps: list[int]  # optimizer steps in each
    median: Rate
    iqr: Rate  # interquartile range of the windows' rates
    iqr_over_median: Annotated[float, Field(ge=0, allow_inf_nan=False)]

    @property
    def unsteady(self) -> str | None:
        """Why the run is unsteady ('IQR/median 14% over 5 windows'), None when steady."""
        if self.iqr_over_median <= UNSTEADY_IQR_OVER_MEDIAN:
            return None
        return f"its own speed wandered: IQR/median {self.iqr_over_median:.0%} over {len(self.window_rates)} windows"


class Training(Part):
    """What the training clock measured (hwbench/measure): epochs, steady and overall throughput, MFU."""

    seconds: Seconds | None = None  # the training loop's own time, validation excluded
    epochs: list[Epoch] = []
    overall: Rates | None = None
    steady: Rates | None = None
    steady_excludes: Text | None = None
    partial: bool = False  # the figures cover only the epochs that finished
    flops_per_sample: Flops | None = None
    peak: Peak | None = None
    mfu_unavailable: Text | None = None
    measured_peak: MeasuredPeak | None = None
    measured_peak_unavailable: Text | None = None
    time_to_val_acc: dict[Name, Seconds | None] = {}
    stability: Stability | None = None
    stability_unavailable: Text | None = None
