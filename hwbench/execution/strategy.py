"""What an execution strategy is: how the optimizer steps of one training step run on the device.

The LightningModule owns the math (the net, the loss, the metrics); a strategy owns how it executes: plain
eager kernels, a compiled net, or whole steps captured in CUDA graphs. Each refuses the configs it cannot
run before anything is built, prepares off the training clock (compiling, capturing), then takes the steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import DictConfig
from torch import Tensor, nn

if TYPE_CHECKING:
    from hwbench.data.datamodules import InMemoryDataModule
    from hwbench.execution.replay_timer import ReplayTimer
    from hwbench.model.classifier import Classifier

Batch = tuple[Tensor, Tensor]


class Execution:
    """The base of every strategy; subclasses set ``kind`` (the config group's option) and override what differs."""

    kind: str
    prepares = False  # whether ``prepare`` does anything: compiling, capturing
    mode: str | None = None  # a strategy's variant, e.g. the torch.compile mode
    steps_per_graph: int | None = None  # optimizer steps one CUDA-graph replay takes (graph strategies)

    def refuse(self, cfg: DictConfig, accelerator: str) -> None:
        """Raise ``ConfigError`` (or ``DeviceUnavailable``) for a config this strategy cannot run."""

    def build_net(self, net: nn.Module) -> nn.Module:
        """The net as the module will call it (compiled, for instance)."""
        return net

    def optimizer_options(self, optimizer: type) -> dict[str, object]:
        """Extra constructor arguments for the optimizer class (a fused implementation, for instance)."""
        return {}

    def prepare(self, module: Classifier, data: InMemoryDataModule) -> None:
        """Off the training clock, before the first step: compile, capture. Leaves the weights as it found them."""

    def train(self, module: Classifier, batches: list[Batch]) -> None:
        """Take one optimizer step per batch, handing each step's loss and logits to ``module.keep``."""
        raise NotImplementedError

    def busy_timer(self) -> ReplayTimer | None:
        """Graph strategies: the CUDA events around their replays, which tell how busy the GPU was (no profiler:
        CUPTI around graph replays corrupts them, pytorch/pytorch#75504). Others: None, and a profiler may look."""
        return None

    def hides_kernels(self) -> str | None:
        """Why neither the profiler nor replay events may look at this strategy's kernels, if they may not."""
        return None
