"""``execution=eager`` and ``execution=compiled``: one optimizer step per batch, launched from Python."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from lightning.pytorch.strategies import ParallelStrategy
from omegaconf import DictConfig
from torch import nn

from hwbench.errors import one_of
from hwbench.execution.strategy import Batch, Execution

if TYPE_CHECKING:
    from hwbench.data.datamodules import InMemoryDataModule
    from hwbench.model.classifier import Classifier

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes whose graphs reuse output buffers


class Eager(Execution):
    """The plainest loop: forward, loss, backward, optimizer (and scheduler) step, per batch."""

    kind = "eager"
    keeps_copies = False  # whether a step's outputs must be copied before the next step overwrites them

    def train(self, module: Classifier, batches: list[Batch]) -> None:
        optimizer = module.optimizers(use_pl_optimizer=False)
        scheduler = module.lr_schedulers()
        scaler = getattr(module.trainer.precision_plugin, "scaler", None)  # set for 16-mixed only
        # DDP all-reduces gradients only through Lightning's backward (it re-arms the reducer for each of the
        # group's backwards; a plain backward would not sync); one device keeps the hook-free plain backward
        distributed = isinstance(module.trainer.strategy, ParallelStrategy)  # DDP, even on one device
        for x, y in batches:
            logits = module(x)
            loss = module.loss(logits, y)
            module.keep("train", loss, logits, [y], copy=self.keeps_copies)
            optimizer.zero_grad(set_to_none=True)
            if distributed:
                module.manual_backward(loss)  # under 16-mixed the precision plugin scales the loss with the scaler
            else:
                (loss if scaler is None else scaler.scale(loss)).backward()
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)
                scaler.update()
            if scheduler is not None:
                scheduler.step()  # type: ignore[union-attr]


class Compiled(Eager):
    """The eager loop over a ``torch.compile``d net; compiled on one warm-up step before the clock starts."""

    kind = "compiled"
    prepares = True

    def __init__(self, mode: str = "default") -> None:
        self.mode = mode
        self.keeps_copies = mode in CUDA_GRAPH_MODES  # their CUDA graphs reuse the output buffer on the next call

    def build_net(self, net: nn.Module) -> nn.Module:
        """From a clean slate: the jobs of a multirun share one process, and a previous job's CUDA-graph trees
        broke the next capture. Compiled code stays cached on disk."""
        torch.compiler.reset()
        return torch.compile(net, mode=self.mode)

    def refuse(self, cfg: DictConfig, accelerator: str) -> None:
        one_of("execution.mode", self.mode, COMPILE_MODES)

    def prepare(self, module: Classifier, data: InMemoryDataModule) -> None:
        """One forward and backward compiles the net; the step is then undone (weights, BN statistics, grads)."""
        x, y = (t[: data.batch_size] for t in data.splits["train"])
        state = copy.deepcopy(module.state_dict())
        with module.trainer.precision_plugin.forward_context():
            loss = module.loss(module(x), y)
        loss.backward()
        module.load_state_dict(state)
        module.zero_grad(set_to_none=True)

    def hides_kernels(self) -> str | None:
        if self.keeps_copies:
            return f"compile mode {self.mode} replays CUDA graphs inside torch.compile, where no probe may look"
        return None
