"""``execution=eager`` and ``execution=compiled``: one optimizer step per batch, launched from Python."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from omegaconf import DictConfig
from torch import nn

from hwbench.errors import one_of
from hwbench.execution.strategy import Batch, Execution, Trainee
from hwbench.execution.undo import undone

if TYPE_CHECKING:
    from hwbench.data.datamodules import InMemoryDataModule

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes whose graphs reuse output buffers


class Eager(Execution):
    """The plainest loop: forward, loss, backward, optimizer (and scheduler) step, per batch."""

    kind = "eager"
    keeps_copies = False  # whether a step's outputs must be copied before the next step overwrites them

    def train(self, module: Trainee, batches: list[Batch]) -> None:
        stepping = module.stepping
        for x, y in batches:
            logits = module(x)
            loss = module.loss(logits, y)
            module.keep("train", loss, logits, [y], copy=self.keeps_copies)
            stepping.optimizer.zero_grad(set_to_none=True)
            stepping.backward(loss)
            stepping.update()


class Compiled(Eager):
    """The eager loop over a ``torch.compile``d net; compiled on one warm-up step before the clock starts."""

    kind = "compiled"
    prepares = True

    def __init__(self, mode: str = "default") -> None:
        self.mode = mode
        self.keeps_copies = mode in CUDA_GRAPH_MODES  # their CUDA graphs reuse the output buffer on the next call

    @property
    def replays_inside_compile(self) -> bool:
        """Whether torch.compile replays CUDA graphs of its own, where no probe may look at the kernels."""
        return self.keeps_copies

    def build_net(self, net: nn.Module) -> nn.Module:
        """From a clean slate: a previous compile's CUDA-graph trees broke the next capture when jobs shared a
        process. Compiled code stays cached on disk."""
        torch.compiler.reset()
        return torch.compile(net, mode=self.mode)

    def refuse(self, cfg: DictConfig, accelerator: str) -> None:
        one_of("execution.mode", self.mode, COMPILE_MODES)

    def prepare(self, module: Trainee, data: InMemoryDataModule) -> None:
        """One forward and backward compiles the net; the step is then undone (weights, BN statistics, grads)."""
        x, y = (t[: data.batch_size] for t in data.splits["train"])
        with undone(module):  # type: ignore[arg-type]  # a Trainee is an nn.Module
            with module.stepping.forward_context():
                loss = module.loss(module(x), y)
            loss.backward()
