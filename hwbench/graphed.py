"""``execution=graph``: the whole optimizer step (forward, loss, backward, update) captured in one CUDA graph.

PyTorch's whole-network capture recipe (torch.cuda.graph): warm up on a side stream, capture once on static
input buffers, then each step is two on-device copies into those buffers and one graph replay, so the host
launches one graph instead of a few dozen kernels. The warm-up steps are undone before capture, so graphed
training takes the same steps as eager from the same weights.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from lightning import Callback, LightningModule, Trainer
from torch import Tensor, nn

from hwbench.data import InMemoryDataModule
from hwbench.devices import synchronize

WARMUP_STEPS = 3  # the recipe's side-stream warm-up: lets cuDNN and the allocator settle before capture


class GraphedStep:
    """One captured training step for batches of one shape; ``__call__`` returns the static loss and logits
    (overwritten by the next replay: copy what must outlive it)."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        x: Tensor,
        y: Tensor,
        autocast: Callable[[], AbstractContextManager] = nullcontext,
    ) -> None:
        self.static_x, self.static_y = x.clone(), y.clone()
        params = copy.deepcopy(net.state_dict())
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_STEPS):
                self._step(net, optimizer, loss_fn, autocast)
        torch.cuda.current_stream().wait_stream(stream)
        undo(net, optimizer, params)  # in place: the graph will read and write these very tensors
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss, self.logits = self._step(net, optimizer, loss_fn, autocast)

    def _step(
        self,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        autocast: Callable[[], AbstractContextManager],
    ) -> tuple[Tensor, Tensor]:
        optimizer.zero_grad(set_to_none=False)  # gradients live in the graph's memory: zeroed, never freed
        with autocast():
            logits = net(self.static_x)
            loss = loss_fn(logits, self.static_y)
        loss.backward()
        optimizer.step()
        return loss, logits

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        self.static_x.copy_(x)
        self.static_y.copy_(y)
        self.graph.replay()
        return self.loss, self.logits


class GraphCapture(Callback):
    """Captures the module's training step before training starts (``pl_module.capture(x, y)``), so that no
    training clock includes it; ``seconds`` is the warm-up and capture time."""

    def __init__(self, data: InMemoryDataModule) -> None:
        self.data = data
        self.seconds: float | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        x, y = (t[: self.data.batch_size] for t in self.data.splits["train"])
        device = trainer.strategy.root_device
        synchronize(device)
        start = time.perf_counter()
        pl_module.capture(x, y)
        synchronize(device)
        self.seconds = time.perf_counter() - start


def undo(net: nn.Module, optimizer: torch.optim.Optimizer, params: dict[str, Tensor]) -> None:
    """Back to the weights before warm-up, with the optimizer's state as before its first step (for SGD's
    momentum, a zero buffer updates exactly as the missing one would)."""
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            tensor.copy_(params[name])
        for state in optimizer.state.values():
            for value in state.values():
                if isinstance(value, Tensor):
                    value.zero_()
