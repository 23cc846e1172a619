"""What an execution strategy is: how the optimizer steps of one training step run on the device.

The module owns the math (the net, the loss, the metrics); a strategy owns how it executes: plain eager kernels,
a compiled net, or whole steps captured in CUDA graphs. Each refuses the configs it cannot run before anything is
built, prepares off the training clock (compiling, capturing), then takes the steps. A strategy sees the module
only through ``Trainee``: it never imports the LightningModule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from hwbench.record.parts import ExecutionPart

if TYPE_CHECKING:
    from hwbench.data.datamodules import InMemoryDataModule

Batch = tuple[Tensor, Tensor]
Schedule = Callable[..., torch.optim.lr_scheduler.LRScheduler]  # (optimizer, total_steps=...) -> scheduler


@dataclass(frozen=True)
class Stepping:
    """What the steps update with: the optimizer, its schedule and scaler, and how a backward syncs (DDP)."""

    optimizer: torch.optim.Optimizer
    total_steps: int  # optimizer steps in the whole run: what a schedule is built for
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None  # stepped after every optimizer step
    schedule: Schedule | None = None  # builds the scheduler; a CUDA graph replays its rates from a table
    scaler: torch.amp.GradScaler | None = None  # 16-mixed only
    synced_backward: Callable[[Tensor], None] | None = None  # DDP: Lightning's backward, which all-reduces
    forward_context: Callable[[], AbstractContextManager] = field(default=nullcontext)
    bf16: bool = False

    def backward(self, loss: Tensor) -> None:
        if self.synced_backward is not None:
            self.synced_backward(loss)  # under 16-mixed the precision plugin scales the loss with the scaler
        else:
            (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def update(self) -> None:
        """The optimizer step (unscaled first under 16-mixed), then the schedule's."""
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()


class Trainee(Protocol):
    """What a strategy needs of the module it trains: forward and loss, where a step's outputs go, and the
    stepping (the LightningModule satisfies it)."""

    net: nn.Module  # the network (what a strategy that runs layers itself walks: execution=fused on a CPU)
    channels_last: bool  # whether the forward feeds the net NHWC images

    @property
    def stepping(self) -> Stepping: ...

    def __call__(self, x: Tensor) -> Tensor: ...

    def loss(self, logits: Tensor, y: Tensor) -> Tensor: ...

    def keep(self, split: str, loss: Tensor, logits: Tensor, targets: Sequence[Tensor], copy: bool = False) -> None:
        """One or more steps' mean losses and logits, for the epoch's metrics (``copy``: buffers a replay reuses)."""

    def state_dict(self) -> dict[str, Any]: ...

    def zero_grad(self, set_to_none: bool = True) -> None: ...


class Execution:
    """The base of every strategy; subclasses set ``kind`` (the config group's option) and override what differs."""

    kind: str
    prepares = False  # whether ``prepare`` does anything: compiling, capturing
    mode: str | None = None  # a strategy's variant, e.g. the torch.compile mode
    steps_per_graph: int | None = None  # optimizer steps one CUDA-graph replay takes (graph strategies)

    def part(self, prepare_seconds: float | None = None) -> ExecutionPart:
        """The record's part: which strategy ran, its variant, and its preparation's seconds once prepared."""
        return ExecutionPart(kind=self.kind, mode=self.mode, steps_per_graph=self.steps_per_graph,
                             prepare_seconds=prepare_seconds)  # fmt: skip

    def refuse(self, cfg: DictConfig, accelerator: str) -> None:
        """Raise ``ConfigError`` (or ``DeviceUnavailable``) for a config this strategy cannot run."""

    def build_net(self, net: nn.Module) -> nn.Module:
        """The net as the module will call it (compiled, for instance)."""
        return net

    def optimizer_options(self, optimizer: type) -> dict[str, object]:
        """Extra constructor arguments for the optimizer class (a fused implementation, for instance)."""
        return {}

    def prepare(self, module: Trainee, data: InMemoryDataModule) -> None:
        """Off the training clock, before the first step: compile, capture. Leaves the weights as it found them."""

    def train(self, module: Trainee, batches: list[Batch]) -> None:
        """Take one optimizer step per batch, handing each step's loss and logits to ``module.keep``."""
        raise NotImplementedError
