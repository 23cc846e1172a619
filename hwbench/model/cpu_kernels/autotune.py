"""Which CPU kernel each kind of layer runs: the fastest candidate, timed on the run's own shapes before training.

As ``cudnn.benchmark`` does for a GPU's convolutions, but for the net's whole training step (forward, loss,
backward), so that what a kernel does to the layers around it counts too (a channels-last convolution makes
the max-pool after it faster). Kinds are chosen one after another (conv2d, dropout, linear), each timed with
the kinds before it already chosen. Which kernel wins depends on the CPU: oneDNN's matmuls beat MKL's on an
AMD EPYC with AVX-512 and lose on an Intel Xeon, so hwbench measures instead of guessing.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
import torch.nn.functional as F
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn

from hwbench.data.datamodules import InMemoryDataModule
from hwbench.execution.undo import undone
from hwbench.model.cpu_kernels.layers import TORCH, Conv2d, Dropout, KernelLayer, Linear
from hwbench.record.parts import CpuKernels, KernelChoice

log = logging.getLogger(__name__)
AUTO = "auto"
KINDS = {layer.kind: layer.KERNELS for layer in (Conv2d, Dropout, Linear)}  # in the order they are chosen
ROUNDS = 5
BLOCK_SECONDS = 0.02  # each timed block: at least this long, at least one step


def time_candidates(
    candidates: Mapping[str, Callable[[], object]],
    rounds: int = ROUNDS,
    block_seconds: float = BLOCK_SECONDS,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Each candidate's median milliseconds per call over ``rounds`` rounds in alternating order (a busy moment
    of a shared machine hits every candidate), after one untimed call each. A round times each candidate's
    calls for at least ``block_seconds``."""
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
    return {name: statistics.median(times) for name, times in ms.items()}


class ChoiceCache:
    """Choices kept by a caller that times several nets in one process, by the net's kernel layers, input shape,
    threads, precision and settings. A job keeps none: it runs in a fresh process (hwbench.launch.process) and
    measures its own choice, in that process's own state (a heap layout can change which kernel is faster)."""

    def __init__(self) -> None:
        self.choices: dict[tuple, CpuKernels] = {}


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
    cache: ChoiceCache | None = None,
) -> CpuKernels | None:
    """Choose and set the CPU kernel of each kind of layer in ``net`` (``settings``: kind -> ``auto`` or a
    kernel to force), timing training steps on the batch ``x``, ``y``; None for a net without such layers.

    The net's weights, buffers and gradients and torch's random stream are left as they were. ``cache``: where
    an earlier choice for the same layers, shapes, threads and settings is taken from; None: always measured.
    """
    by_kind = kernel_layers(net)
    if not by_kind:
        return None
    with forward_context():  # under autocast oneDNN's float32 matmul does not apply
        autocast = torch.is_autocast_enabled("cpu")
        candidates = {kind: [k for k in KINDS[kind] if any(k in layer.kernels() for layer in layers)]
                      for kind, layers in by_kind.items()}  # fmt: skip
    compiled = any(hasattr(module, "_orig_mod") for module in net.modules())
    # the layers (their shapes and rates), not the module around them: a cache serves nets built alike
    layers = tuple(repr(layer) for layers in by_kind.values() for layer in layers)
    key = (layers, tuple(x.shape), x.stride(), x.dtype, autocast, torch.get_num_threads(),
           tuple(sorted(settings.items())), compiled)  # fmt: skip
    if cache is not None and key in cache.choices:
        part = cache.choices[key].model_copy(update={"cached": True, "seconds": 0.0})
        apply_choice(net, part)
        return part
    start = time.perf_counter()
    choices: dict[str, KernelChoice] = {}
    with unchanged(net):
        step = training_step(net, x, y, forward_context)
        for kind, layers in by_kind.items():
            choices[kind] = choose_kind(layers, candidates[kind], settings.get(kind, AUTO), compiled, step, rounds)
    part = CpuKernels(layers=choices, seconds=time.perf_counter() - start, rounds=rounds)
    if cache is not None:
        cache.choices[key] = part
    return part


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

    ms = time_candidates({kernel: with_kernel(kernel) for kernel in candidates}, rounds)
    fastest = min(ms, key=ms.__getitem__)
    use(layers, fastest)
    return KernelChoice(kernel=fastest, how="measured", ms_per_step=ms)


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
    return "; ".join(items) + (" [cached]" if part.cached else f" [{part.seconds:.2f} s]")


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
            self.part = choose_kernels(pl_module, x, y, self.settings, trainer.precision_plugin.forward_context)
        if trainer.world_size > 1:
            self.part = trainer.strategy.broadcast(self.part)
            if self.part is not None:
                apply_choice(pl_module, self.part)
        if self.part is not None:
            log.info(f"cpu kernels: {describe(self.part)}")
            board = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)  # its Text tab
            if board is not None and trainer.is_global_zero:
                board.experiment.add_text("cpu_kernels", describe(self.part))
