"""Everything ``torch.compile``: compiling the net, and compiling it before the training clock starts."""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from lightning import Callback, LightningModule, Trainer
from torch import nn

from hwbench.data import InMemoryDataModule
from hwbench.devices import synchronize

CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # their graphs reuse the output buffer on the next call


def compile_net(net: nn.Module, setting: bool | str) -> nn.Module:
    """``torch.compile`` in the config's mode (``true``: the default mode), from a clean slate.

    The reset is what a fresh process would give: the jobs of a multirun share one process, and a previous
    job's CUDA-graph trees broke the next capture. Compiled code stays cached on disk.
    """
    torch.compiler.reset()
    return torch.compile(net, mode="default" if setting is True else setting)


class CompileWarmup(Callback):
    """Compiles the net on one training step before training starts, then undoes that step, so that no
    training clock includes compile time; ``seconds`` is the compile time."""

    def __init__(self, data: InMemoryDataModule) -> None:
        self.data = data
        self.seconds: float | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        x, y = (t[: self.data.batch_size] for t in self.data.splits["train"])
        state = copy.deepcopy(pl_module.state_dict())
        device = trainer.strategy.root_device
        synchronize(device)
        start = time.perf_counter()
        with trainer.precision_plugin.forward_context():
            loss = F.cross_entropy(pl_module(x), y)
        loss.backward()
        synchronize(device)
        self.seconds = time.perf_counter() - start
        pl_module.load_state_dict(state)  # the warm-up step leaves no trace: weights and BN statistics
        pl_module.zero_grad(set_to_none=True)
