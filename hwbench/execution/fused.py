"""``execution=fused``: Inductor-fused steps with a fused optimizer, a whole group of them in one CUDA graph.

Forward and loss go to Inductor (``torch.compile``: the elementwise work fused into few kernels, backward
included), a fused optimizer steps, reading the learning rate from a device table (``LrTable``), and a whole
Lightning step (``steps_per_graph`` optimizer steps) is captured in one graph: the host launches one replay
per group of steps.

On a CPU (no CUDA graphs, no Inductor gain there) it runs plain SGD's step written out by hand for the net's dense
layers (``cpu_step``); a run that step does not cover (another optimizer, a schedule, mixed precision, DDP) runs
eager, said in one line and in the record.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from omegaconf import DictConfig

from hwbench.errors import DeviceUnavailable
from hwbench.execution.captured_steps import Step
from hwbench.execution.cpu_step import FusedSgdStep, plan, uncovered
from hwbench.execution.eager import CUDA_GRAPH_MODES, Eager
from hwbench.execution.graph import Graph, capture_limits, has_fused
from hwbench.execution.lr_table import LrTable, scheduled_rates
from hwbench.execution.strategy import Batch, Stepping, Trainee
from hwbench.record.parts import ExecutionPart

if TYPE_CHECKING:
    from hwbench.data.datamodules import InMemoryDataModule

log = logging.getLogger(__name__)


class Fused(Graph):
    """``graph``'s capture with Inductor's kernels, a fused optimizer, the schedule on the device, and
    ``steps_per_graph`` optimizer steps per replay."""

    kind = "fused"

    def __init__(self, compile_mode: str = "default", steps_per_graph: int = 64) -> None:
        super().__init__()
        self.mode, self.steps_per_graph = compile_mode, steps_per_graph
        self.on_cpu = False
        self.cpu_step: FusedSgdStep | None = None  # on a CPU, once prepared
        self.eager = Eager()  # what a fallback runs
        self.fell_back = False  # on a CPU: the run asks for what the CPU step does not cover, and runs eager

    def refuse(self, cfg: DictConfig, accelerator: str) -> None:
        if accelerator == "cpu":  # what the CPU step does not cover runs eager (prepare says so): nothing refused
            self.on_cpu = True
        elif accelerator != "cuda":
            raise DeviceUnavailable(f"execution=fused runs on a CUDA GPU or a CPU and this job runs on {accelerator}: "
                                    "use execution=eager")  # fmt: skip
        else:
            super().refuse(cfg, accelerator)

    def part(self, prepare_seconds: float | None = None) -> ExecutionPart:
        """On a CPU: ``fused`` with mode ``cpu`` (no graphs), or ``eager`` where the CPU step did not apply."""
        if not self.on_cpu:
            return super().part(prepare_seconds)
        if self.fell_back:
            return ExecutionPart(kind="eager", prepare_seconds=prepare_seconds)
        return ExecutionPart(kind="fused", mode="cpu", prepare_seconds=prepare_seconds)

    def prepare(self, module: Trainee, data: InMemoryDataModule) -> None:
        if not self.on_cpu:
            return super().prepare(module, data)
        steps = plan(module.net)
        why = uncovered(module.stepping) or (steps if isinstance(steps, str) else None)
        if why is not None or isinstance(steps, str):
            self.fell_back = True
            log.warning(f"execution=fused on a CPU does not cover {why}: this run's steps run eager")
            return None
        self.cpu_step = FusedSgdStep(steps, module.stepping, module.channels_last)
        return None

    def train(self, module: Trainee, batches: list[Batch]) -> None:
        if not self.on_cpu:
            return super().train(module, batches)
        if self.cpu_step is None:
            return self.eager.train(module, batches)
        for x, y in batches:
            loss, logits = self.cpu_step(x, y)
            module.keep("train", loss, logits, [y])
        return None

    def unsupported(self, cfg: DictConfig) -> dict[str, bool]:
        name, fused = has_fused(cfg)
        return {
            **capture_limits(cfg),
            "an LR scheduler (optim)": bool(cfg.optim.get("scheduler")) and not fused,
            f"{name} (no fused CUDA implementation: use SGD, Adam or AdamW)": not fused,
            f"execution.compile_mode={self.mode} (it captures CUDA graphs of its own)": self.mode in CUDA_GRAPH_MODES,
        }

    def optimizer_options(self, optimizer: type) -> dict[str, object]:
        if self.on_cpu:  # the CPU step updates the weights itself; a fallback steps the plain optimizer
            return {}
        return super().optimizer_options(optimizer) | {"fused": True}

    def follow_schedule(self, stepping: Stepping, device: torch.device) -> None:
        if stepping.schedule is not None:
            self.lr = LrTable(scheduled_rates(stepping.optimizer, stepping.schedule, stepping.total_steps), device)
            self.lr.attach(stepping.optimizer)

    def forward_loss(self, module: Trainee, bf16: bool) -> Step:
        torch.compiler.reset()  # from a clean slate, as a fresh process would
        return torch.compile(super().forward_loss(module, bf16), mode=self.mode, dynamic=False)
