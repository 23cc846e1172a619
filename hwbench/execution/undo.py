"""Warm-up that leaves no trace: compiling, capturing and timing kernels all take real steps first."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


@contextmanager
def undone(module: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> Iterator[None]:
    """Whatever the block does to the module's weights and buffers is undone in place (a CUDA graph keeps the
    tensors it captured), its gradients are dropped, and the optimizer's state is zeroed: SGD's momentum and
    Adam's moments and step count at zero update exactly as the missing state would."""
    saved = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, tensor in module.state_dict().items():
                tensor.copy_(saved[name])
            for state in optimizer.state.values() if optimizer is not None else ():
                for value in state.values():
                    if isinstance(value, Tensor):
                        value.zero_()
        module.zero_grad(set_to_none=True)
