"""``execution=fused``: Inductor-fused steps with a fused optimizer, a whole group of them in one CUDA graph.

Forward and loss go to Inductor (``torch.compile``: the elementwise work fused into few kernels, backward
included), a fused optimizer steps, reading the learning rate from a device table (``LrTable``), and a whole
Lightning step (``steps_per_graph`` optimizer steps) is captured in one graph: the host launches one replay
per group of steps.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from hwbench.execution.captured_steps import Step
from hwbench.execution.eager import CUDA_GRAPH_MODES
from hwbench.execution.graph import Graph, capture_limits, has_fused
from hwbench.execution.lr_table import LrTable, scheduled_rates
from hwbench.execution.strategy import Stepping, Trainee


class Fused(Graph):
    """``graph``'s capture with Inductor's kernels, a fused optimizer, the schedule on the device, and
    ``steps_per_graph`` optimizer steps per replay."""

    kind = "fused"

    def __init__(self, compile_mode: str = "default", steps_per_graph: int = 64) -> None:
        super().__init__()
        self.mode, self.steps_per_graph = compile_mode, steps_per_graph

    def unsupported(self, cfg: DictConfig) -> dict[str, bool]:
        name, fused = has_fused(cfg)
        return {
            **capture_limits(cfg),
            "an LR scheduler (optim)": bool(cfg.optim.get("scheduler")) and not fused,
            f"{name} (no fused CUDA implementation: use SGD, Adam or AdamW)": not fused,
            f"execution.compile_mode={self.mode} (it captures CUDA graphs of its own)": self.mode in CUDA_GRAPH_MODES,
        }

    def optimizer_options(self, optimizer: type) -> dict[str, object]:
        return super().optimizer_options(optimizer) | {"fused": True}

    def follow_schedule(self, stepping: Stepping, device: torch.device) -> None:
        if stepping.schedule is not None:
            self.lr = LrTable(scheduled_rates(stepping.optimizer, stepping.schedule, stepping.total_steps), device)
            self.lr.attach(stepping.optimizer)

    def forward_loss(self, module: Trainee, bf16: bool) -> Step:
        torch.compiler.reset()  # from a clean slate, as a fresh process would
        return torch.compile(super().forward_loss(module, bf16), mode=self.mode, dynamic=False)
