"""A learning-rate schedule a CUDA graph can follow: every step's rate in a device tensor, read inside the graph.

A scheduler steps on the host, between optimizer steps; a graph that replays many steps has no host in
between. So the schedule is run once ahead on a stand-in optimizer, its rates land in a table on the device,
and each captured step copies ``table[step]`` into the tensor the optimizer reads as its learning rate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hwbench.errors import ConfigError

Schedule = Callable[..., torch.optim.lr_scheduler.LRScheduler]
# what a graph-safe optimizer step must be told at construction, not per step
CONSTRUCTION_ONLY = ("fused", "foreach", "capturable", "differentiable")


def scheduled_rates(optimizer: torch.optim.Optimizer, schedule: Schedule, steps: int) -> list[list[float]]:
    """Each param group's learning rate at each of ``steps`` optimizer steps, as ``schedule`` sets them.

    The schedule runs on a stand-in of the optimizer (same class and hyperparameters, one scalar parameter per
    group), so the real one is untouched. Anything else it changes per step (OneCycleLR's momentum cycling)
    has no place in the table: refused with one line.
    """
    groups = [{k: v for k, v in g.items() if k not in ("params", *CONSTRUCTION_ONLY)} for g in optimizer.param_groups]
    stand_in = type(optimizer)([{**g, "params": [torch.zeros(1, requires_grad=True)]} for g in groups])
    scheduler = schedule(stand_in, total_steps=steps)
    fixed = [{k: v for k, v in g.items() if k not in ("params", "lr", "initial_lr", "max_lr", "min_lr")}
             for g in stand_in.param_groups]  # fmt: skip
    rates = []
    for _ in range(steps):
        rates.append([float(g["lr"]) for g in stand_in.param_groups])
        stand_in.step()  # no gradients: a no-op that keeps the scheduler's order check quiet
        scheduler.step()
        changed = [k for g, before in zip(stand_in.param_groups, fixed, strict=True) for k in before
                   if g[k] != before[k]]  # fmt: skip
        if changed:
            raise ConfigError(
                f"the LR scheduler also changes {changed[0]} per step, which a captured graph cannot follow: "
                f"turn that off (e.g. optim.scheduler.cycle_momentum=false) or use execution=eager"
            )
    return rates


class LrTable:
    """The schedule on the device: ``rates[step, group]``, a step counter, and one rate tensor per group that
    the optimizer reads. ``load`` and ``advance`` are device ops only, so a graph can capture them."""

    def __init__(self, rates: list[list[float]], device: torch.device) -> None:
        self.rates = torch.tensor(rates, dtype=torch.float32, device=device)
        self.step = torch.zeros((), dtype=torch.long, device=device)
        self.lrs = [self.rates[0, g].clone() for g in range(self.rates.shape[1])]

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """From now on the optimizer reads its learning rates from the table's tensors."""
        for group, lr in zip(optimizer.param_groups, self.lrs, strict=True):
            group["lr"] = lr

    def load(self) -> None:
        """Each group's rate for the current step (past the end: the last one)."""
        row = self.rates.index_select(0, self.step.clamp(max=len(self.rates) - 1).view(1))[0]
        for g, lr in enumerate(self.lrs):
            lr.copy_(row[g])

    def advance(self) -> None:
        self.step.add_(1)

    def rewind(self) -> None:
        """Back to step 0 (after the warm-up steps that capture needs)."""
        self.step.zero_()
        self.load()
