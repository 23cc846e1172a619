"""Which CPU kernel each kind of layer runs: the fastest candidate, timed on the run's own shapes before training.

As ``cudnn.benchmark`` does for a GPU's convolutions, but for the net's whole training step (forward, loss,
backward), so that what a kernel does to the layers around it counts too (a channels-last convolution makes
the max-pool after it faster). Kinds are chosen one after another (conv2d, dropout, linear), each timed with
the kinds before it already chosen. Which kernel wins depends on the CPU: oneDNN's matmuls beat MKL's on an
AMD EPYC with AVX-512 and lose on an Intel Xeon, so hwbench measures instead of guessing. Where the fastest is
within the rounds' spread of torch's own kernel, torch's is taken.

A measured choice is kept per CPU and setting (``hwbench.record.kept``: the CPU's model and ISA, torch, threads,
precision, the layers' shapes, the batch), as the matmul peak is: a sweep's later jobs take it at once. A choice
measured while other load took the probe's cores is not kept.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timezone

import torch
import torch.nn.functional as F
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn

from hwbench.data.datamodules import InMemoryDataModule
from hwbench.devices import process_cpu_seconds, starved
from hwbench.execution.undo import undone
from hwbench.model.cpu_kernels.layers import TORCH, Conv2d, Dropout, KernelLayer, Linear
from hwbench.record.fingerprint import cpu_description
from hwbench.record.kept import keep, kept_file, locked, read_kept
from hwbench.record.parts import CpuKernels, KernelChoice

log = logging.getLogger(__name__)
AUTO = "auto"
KINDS = {layer.kind: layer.KERNELS for layer in (Conv2d, Dropout, Linear)}  # in the order they are chosen
ROUNDS = 5
BLOCK_SECONDS = 0.02  # each timed block: at least this long, at least one step
REVISION = 2  # of the candidates' code, in a kept choice's key: one timed on older code is measured again (2: oneDNN's
# backward takes its transposed operands as views)


def time_rounds(
    candidates: Mapping[str, Callable[[], object]],
    rounds: int = ROUNDS,
    block_seconds: float = BLOCK_SECONDS,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Each candidate's milliseconds per call in each of ``rounds`` rounds in alternating order (a busy moment of a
    shared machine hits every candidate), after one untimed call each. A round times each candidate's calls for
    at least ``block_seconds``."""
    names = list(candidates)
    for name in names:
        candidates[name]()
    ms: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            calls, start = 0, clock()
            while True:
                candidates[name]()
                calls += 1
                elapsed = clock() - start
                if elapsed >= block_seconds or calls >= 1000:
                    break
            ms[name].append(elapsed / calls * 1e3)
    return ms


def spread(times: list[float]) -> float:
    """The rounds' interquartile range (their whole range under 4 rounds)."""
    if len(times) < 4:
        return max(times) - min(times)
    q1, _, q3 = statistics.quantiles(times, n=4)
    return q3 - q1


def fastest_or_torch(rounds: dict[str, list[float]]) -> tuple[str, bool]:
    """The candidate with the lowest median, or torch's own where the fastest is not ahead of it by more than
    either's spread (True: a tie, settled for torch)."""
    ms = {name: statistics.median(times) for name, times in rounds.items()}
    fastest = min(ms, key=ms.__getitem__)
    if fastest == TORCH or TORCH not in ms:
        return fastest, False
    if ms[TORCH] - ms[fastest] <= max(spread(rounds[TORCH]), spread(rounds[fastest])):
        return TORCH, True
    return fastest, False


def kernel_layers(net: nn.Module) -> dict[str, list[KernelLayer]]:
    """The net's layers with a kernel choice, by kind (only the kinds the net has)."""
    by_kind: dict[str, list[KernelLayer]] = {}
    for module in net.modules():
        if isinstance(module, KernelLayer):
            by_kind.setdefault(module.kind, []).append(module)
    return {kind: by_kind[kind] for kind in KINDS if kind in by_kind}


def use(layers: list[KernelLayer], kernel: str) -> None:
    for layer in layers:
        layer.kernel = kernel if kernel in layer.kernels() else TORCH


def apply_choice(net: nn.Module, part: CpuKernels) -> None:
    """Set the net's layers to the kernels ``part`` names (the same net, or one built like it)."""
    for kind, layers in kernel_layers(net).items():
        use(layers, part.layers[kind].kernel if kind in part.layers else TORCH)


def choose_kernels(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    settings: Mapping[str, str],
    forward_context: Callable[[], AbstractContextManager] = nullcontext,
    rounds: int = ROUNDS,
    kept: bool = False,
) -> CpuKernels | None:
    """Choose and set the CPU kernel of each kind of layer in ``net`` (``settings``: kind -> ``auto`` or a
    kernel to force), timing training steps on the batch ``x``, ``y``; None for a net without such layers.

    The net's weights, buffers and gradients and torch's random stream are left as they were. ``kept``: take the
    choice kept for this CPU and setting, else measure it and keep it (unless other load took the cores).
    """
    by_kind = kernel_layers(net)
    if not by_kind:
        return None
    with forward_context():  # under autocast oneDNN's float32 matmul does not apply
        autocast = torch.is_autocast_enabled("cpu")
    if not kept:
        return measured_choice(net, by_kind, x, y, settings, forward_context, rounds)
    key = choice_key(by_kind, x, settings, autocast, compiled=is_compiled(net))
    path = kept_file("cpu-kernels", key)
    with locked(path) as held:
        if held and (part := read_kept(path, key, CpuKernels)) is not None:
            apply_choice(net, part)
            return part.model_copy(update={"cached": True, "seconds": 0.0})
        part = measured_choice(net, by_kind, x, y, settings, forward_context, rounds)
        measured = any(c.how in ("measured", "tie") for c in part.layers.values())
        if held and measured and not part.noise:  # a busy machine's choice is not this machine's
            keep(path, key, part)
    return part


def is_compiled(net: nn.Module) -> bool:
    return any(hasattr(module, "_orig_mod") for module in net.modules())


def choice_key(
    by_kind: dict[str, list[KernelLayer]], x: Tensor, settings: Mapping[str, str], autocast: bool, compiled: bool
) -> dict[str, object]:
    """What a choice depends on: the CPU and software, the threads and precision, the layers (their shapes and
    rates, not the module around them: nets built alike share it), the batch, the settings."""
    return {"cpu": cpu_description(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "autocast": autocast, "layers": [repr(layer) for layers in by_kind.values() for layer in layers],
            "batch": [list(x.shape), list(x.stride()), str(x.dtype)], "settings": dict(sorted(settings.items())),
            "compiled": compiled, "revision": REVISION}  # fmt: skip


def measured_choice(
    net: nn.Module, by_kind: dict[str, list[KernelLayer]], x: Tensor, y: Tensor, settings: Mapping[str, str],
    forward_context: Callable[[], AbstractContextManager], rounds: int,
) -> CpuKernels:  # fmt: skip
    """Each kind chosen in turn on timed training steps; flagged where other load took the threads' cores."""
    with forward_context():
        candidates = {kind: [k for k in KINDS[kind] if any(k in layer.kernels() for layer in layers)]
                      for kind, layers in by_kind.items()}  # fmt: skip
    compiled = is_compiled(net)
    start, cpu = time.perf_counter(), process_cpu_seconds()
    choices: dict[str, KernelChoice] = {}
    with unchanged(net):
        step = training_step(net, x, y, forward_context)
        for kind, layers in by_kind.items():
            choices[kind] = choose_kind(layers, candidates[kind], settings.get(kind, AUTO), compiled, step, rounds)
    seconds = time.perf_counter() - start
    timed = any(c.ms_per_step for c in choices.values())
    noise = starved(process_cpu_seconds() - cpu, seconds, torch.get_num_threads()) if timed else []
    return CpuKernels(layers=choices, seconds=seconds, rounds=rounds, noise=noise,
                      measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))  # fmt: skip


def choose_kind(
    layers: list[KernelLayer], candidates: list[str], setting: str, compiled: bool, step: Callable[[], None],
    rounds: int,
) -> KernelChoice:  # fmt: skip
    """Set one kind's layers to its kernel: forced, the only one, torch's under compile, else the fastest."""
    if compiled:  # torch.compile traces torch's own layers
        use(layers, TORCH)
        return KernelChoice(kernel=TORCH, how="compiled")
    if setting != AUTO or len(candidates) == 1:
        kernel = setting if setting in candidates else TORCH
        use(layers, kernel)
        return KernelChoice(kernel=kernel, how="forced" if kernel == setting else "only one applies")

    def with_kernel(kernel: str) -> Callable[[], None]:
        def run() -> None:
            use(layers, kernel)
            step()

        return run

    times = time_rounds({kernel: with_kernel(kernel) for kernel in candidates}, rounds)
    kernel, tie = fastest_or_torch(times)
    use(layers, kernel)
    ms = {name: statistics.median(t) for name, t in times.items()}
    return KernelChoice(kernel=kernel, how="tie" if tie else "measured", ms_per_step=ms)


def training_step(
    net: nn.Module, x: Tensor, y: Tensor, forward_context: Callable[[], AbstractContextManager]
) -> Callable[[], None]:
    """A training step without the update: fresh gradients (as ``zero_grad(set_to_none=True)``), forward,
    cross-entropy, backward."""
    params = [p for p in net.parameters() if p.requires_grad]

    def step() -> None:
        for p in params:
            p.grad = None
        with forward_context():
            loss = F.cross_entropy(net(x), y)
        loss.backward()

    return step


@contextmanager
def unchanged(net: nn.Module) -> Iterator[None]:
    """Restores the net's weights, buffers and train/eval mode, drops its gradients and restores torch's CPU
    random stream: timing steps leaves no trace in training."""
    rng, training = torch.get_rng_state(), net.training
    net.train()
    try:
        with undone(net):
            yield
    finally:
        net.train(training)
        torch.set_rng_state(rng)


def describe(part: CpuKernels) -> str:
    """One line: each kind's kernel, and how it was chosen (with the timings when measured)."""
    items = []
    for kind, choice in part.layers.items():
        timings = ", ".join(f"{k} {ms:.2f}" for k, ms in choice.ms_per_step.items())
        items.append(f"{kind}={choice.kernel} ({choice.how}{f': {timings} ms/step' if timings else ''})")
    when = f" [kept from {part.measured_at}]" if part.cached else f" [{part.seconds:.2f} s]"
    noise = f" (not kept: {'; '.join(part.noise)})" if part.noise else ""
    return "; ".join(items) + when + noise


class CpuKernelChoice(Callback):
    """Chooses the CPU kernels of the net's layers before training starts (off the training clock), on the
    run's batch shape, threads and precision; ``part`` is the record's. Under DDP rank 0 measures alone and
    every rank takes its choice."""

    def __init__(self, settings: Mapping[str, str], data: InMemoryDataModule) -> None:
        self.settings, self.data = dict(settings), data
        self.part: CpuKernels | None = None

    def record_parts(self) -> dict[str, CpuKernels]:
        return {"cpu_kernels": self.part} if self.part is not None else {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.strategy.root_device.type != "cpu":
            return
        x, y = (t[: self.data.batch_size] for t in self.data.splits["train"])
        if trainer.is_global_zero:
            self.part = choose_kernels(pl_module, x, y, self.settings, trainer.precision_plugin.forward_context,
                                       kept=True)  # fmt: skip
        if trainer.world_size > 1:
            self.part = trainer.strategy.broadcast(self.part)
            if self.part is not None:
                apply_choice(pl_module, self.part)
        if self.part is not None:
            log.info(f"cpu kernels: {describe(self.part)}")
            board = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)  # its Text tab
            if board is not None and trainer.is_global_zero:
                board.experiment.add_text("cpu_kernels", describe(self.part))
