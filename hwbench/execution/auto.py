"""``execution=auto``: on a CPU, eager or fused, whichever takes this run's steps faster on this machine, measured.

As the CPU kernel choice does for layers: both steps are timed on the run's first batch before training (off the
clock, alternated, medians), the weights, optimizer and random stream then restored, and the faster one trains. No
CPU, vendor or ISA is assumed to favour either. On other devices it runs eager and says so in one line: measuring
a GPU's fused step means compiling and capturing it, which ``python -m hwbench -m execution=eager,graph,fused
repeats=3`` does better (the sweep's verdict names the fastest).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from omegaconf import DictConfig
from torch import Tensor

from hwbench.execution.eager import Eager
from hwbench.execution.fused import Fused
from hwbench.execution.strategy import Batch, Execution, Trainee
from hwbench.execution.undo import undone
from hwbench.record.parts import ExecutionPart

if TYPE_CHECKING:
    from hwbench.data.datamodules import InMemoryDataModule

log = logging.getLogger(__name__)
ROUNDS = 7
BLOCK_SECONDS = 0.02  # each timed block: at least this long, at least one step


class Auto(Execution):
    """``fused``'s CPU step where it is faster than eager's on this machine, else eager; eager off a CPU."""

    kind = "auto"
    prepares = True

    def __init__(self, rounds: int = ROUNDS) -> None:
        self.rounds = rounds
        self.fused, self.eager = Fused(), Eager()
        self.on_cpu = self.use_fused = False
        self.ms_per_step: dict[str, float] = {}

    def refuse(self, cfg: DictConfig, accelerator: str) -> None:
        self.on_cpu = accelerator == "cpu"
        if self.on_cpu:
            self.fused.refuse(cfg, accelerator)
        else:
            log.warning(f"execution=auto measures on a CPU; on {accelerator} it runs eager (compare the executions "
                        "with python -m hwbench -m execution=eager,graph,fused repeats=3)")  # fmt: skip

    def part(self, prepare_seconds: float | None = None) -> ExecutionPart:
        """The execution that ran (``eager`` or ``fused``), mode ``auto``: chosen here, not by the user."""
        return ExecutionPart(kind="fused" if self.use_fused else "eager", mode="auto", prepare_seconds=prepare_seconds)

    def prepare(self, module: Trainee, data: InMemoryDataModule) -> None:
        if not self.on_cpu:
            return
        self.fused.prepare(module, data)  # the fused step, or why it does not apply (then eager, said in one line)
        step = self.fused.cpu_step
        if step is None:
            return
        x, y = (t[: data.batch_size] for t in data.splits["train"])
        unkept = Unkept(module)
        steps = {"eager": lambda: self.eager.train(unkept, [(x, y)]), "fused": lambda: step(x, y)}  # type: ignore[arg-type]
        self.ms_per_step = time_steps(module, steps, self.rounds)
        self.use_fused = self.ms_per_step["fused"] <= self.ms_per_step["eager"]
        timings = ", ".join(f"{name} {ms:.2f}" for name, ms in self.ms_per_step.items())
        log.info(f"execution=auto: {'fused' if self.use_fused else 'eager'} ({timings} ms/step on this CPU)")

    def train(self, module: Trainee, batches: list[Batch]) -> None:
        (self.fused if self.use_fused else self.eager).train(module, batches)


class Unkept:
    """A trainee whose steps keep nothing for the epoch's metrics: what the timed steps train."""

    def __init__(self, module: Trainee) -> None:
        self.module, self.stepping = module, module.stepping
        self.net, self.channels_last = module.net, module.channels_last

    def __call__(self, x: Tensor) -> Tensor:
        return self.module(x)

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return self.module.loss(logits, y)

    def keep(self, split: str, loss: Tensor, logits: Tensor, targets: Sequence[Tensor], copy: bool = False) -> None:
        """Nothing kept."""


def time_steps(module: Trainee, steps: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Each step's median milliseconds over ``rounds`` rounds in alternating order (a busy moment of a shared
    machine hits both), after one untimed call each; the module's weights, optimizer state and torch's random
    stream left as they were."""
    rng, optimizer = torch.get_rng_state(), module.stepping.optimizer
    ms: dict[str, list[float]] = {name: [] for name in steps}
    with undone(module, optimizer):  # type: ignore[arg-type]  # a Trainee is an nn.Module
        for step in steps.values():
            step()
        for r in range(rounds):
            for name in list(steps) if r % 2 == 0 else list(steps)[::-1]:
                calls, start = 0, time.perf_counter()
                while True:
                    steps[name]()
                    calls += 1
                    elapsed = time.perf_counter() - start
                    if elapsed >= BLOCK_SECONDS or calls >= 100:
                        break
                ms[name].append(elapsed / calls * 1e3)
    torch.set_rng_state(rng)
    return {name: statistics.median(times) for name, times in ms.items()}
