"""``execution=graph``: each optimizer step (the eager kernels) captured in one CUDA graph and replayed.

PyTorch's whole-network capture recipe (torch.cuda.graph): warm up on a side stream, undo the warm-up, capture on
static input buffers; then a step is a copy into those buffers and one replay, and the host launches one graph
instead of a few dozen kernels. Every batch shape the epoch has (full batches, and the shorter last one) gets
its graph before training, so no step runs outside a graph.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import TYPE_CHECKING

import torch
from hydra.utils import get_class
from omegaconf import DictConfig
from torch import Tensor

from hwbench.errors import ConfigError, DeviceUnavailable
from hwbench.execution.captured_steps import CapturedSteps, Step, chunk_sizes
from hwbench.execution.lr_table import LrTable
from hwbench.execution.replay_timer import ReplayTimer
from hwbench.execution.strategy import Batch, Execution, Stepping, Trainee
from hwbench.execution.undo import undone

if TYPE_CHECKING:
    from hwbench.data.datamodules import InMemoryDataModule

WARMUP_PASSES = 3  # the recipe's side-stream warm-up: cuDNN's autotuning, the allocator and lazy state settle first


class Graph(Execution):
    """Optimizer steps replayed from CUDA graphs, one step per graph; ``timer`` times the replays (GPU busy)."""

    kind = "graph"
    prepares = True

    def __init__(self) -> None:
        self.steps_per_graph = 1
        self.timer = ReplayTimer()
        self.graphs: dict[tuple[int, ...], CapturedSteps] = {}  # the steps' batch sizes -> their graph
        self.lr: LrTable | None = None

    # ---- before anything is built -----------------------------------------------------------------------
    def refuse(self, cfg: DictConfig, accelerator: str) -> None:
        for what, present in self.unsupported(cfg).items():
            if present:
                raise ConfigError(f"execution={self.kind} does not combine with {what}; or use execution=eager")
        if accelerator != "cuda":
            raise DeviceUnavailable(
                f"execution={self.kind} captures CUDA graphs and this job runs on {accelerator}: "
                f"use a CUDA GPU (device=gpu) or execution=eager"
            )

    def unsupported(self, cfg: DictConfig) -> dict[str, bool]:
        """What this strategy cannot run, each with whether the config asks for it."""
        schedule = "an LR scheduler (optim): use execution=fused, which follows one"
        return capture_limits(cfg) | {schedule: bool(cfg.optim.get("scheduler"))}

    def optimizer_options(self, optimizer: type) -> dict[str, object]:
        """Capturable state: a CUDA graph may not read the step count on the host."""
        return {"capturable": True} if "capturable" in inspect.signature(optimizer).parameters else {}

    # ---- off the clock ------------------------------------------------------------------------------------
    def prepare(self, module: Trainee, data: InMemoryDataModule) -> None:
        stepping = module.stepping
        x, y = data.splits["train"]
        self.follow_schedule(stepping, x.device)
        shapes = chunk_sizes(len(y), data.batch_size, data.train_group, self.steps_per_graph)
        self.graphs = {sizes: CapturedSteps(sizes, x, y) for sizes in sorted(shapes)}
        step = partial(self.step, stepping.optimizer, self.forward_loss(module, stepping.bf16))
        with undone(module, stepping.optimizer):  # type: ignore[arg-type]  # in place: the graphs read these tensors
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for graph in self.graphs.values():
                    for _ in range(max(1, WARMUP_PASSES // len(graph.sizes))):
                        graph.run(step)
            torch.cuda.current_stream().wait_stream(side)
        if self.lr is not None:
            self.lr.rewind()
        for graph in self.graphs.values():
            graph.capture(step)

    def follow_schedule(self, stepping: Stepping, device: torch.device) -> None:
        """A strategy that follows an LR schedule inside its graphs sets ``lr`` here (``graph`` refuses one)."""

    def forward_loss(self, module: Trainee, bf16: bool) -> Step:
        def forward_loss(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            with torch.autocast("cuda", torch.bfloat16, enabled=bf16, cache_enabled=False):  # no cache in a graph
                logits = module(x)
                return module.loss(logits, y), logits

        return forward_loss

    def step(self, optimizer: torch.optim.Optimizer, forward_loss: Step, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One optimizer step; its gradients live only inside it (set to None, never zeroed: no kernel)."""
        loss, logits = forward_loss(x, y)
        loss.backward()
        if self.lr is not None:
            self.lr.load()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if self.lr is not None:
            self.lr.advance()
        return loss.detach(), logits.detach()

    # ---- the clock runs ----------------------------------------------------------------------------------
    def train(self, module: Trainee, batches: list[Batch]) -> None:
        for first in range(0, len(batches), self.steps_per_graph):  # one replay per graph's worth of steps
            xs, ys = zip(*batches[first : first + self.steps_per_graph], strict=True)
            losses, logits = self.graphs[tuple(len(t) for t in ys)](xs, ys, self.timer)
            module.keep("train", losses, logits, ys, copy=True)


def capture_limits(cfg: DictConfig) -> dict[str, bool]:
    """What no captured step can run, each with whether the config asks for it."""
    return {
        "device.precision=16-mixed (its GradScaler syncs with the host)": str(cfg.device.precision) == "16-mixed",
        "DDP (device.devices > 1 or device.strategy=ddp)": cfg.device.devices > 1 or cfg.device.strategy == "ddp",
    }


def has_fused(cfg: DictConfig) -> tuple[str, bool]:
    """The config's optimizer class name, and whether it has a fused CUDA implementation."""
    optimizer = get_class(cfg.optim.optimizer._target_)
    return optimizer.__name__, "fused" in inspect.signature(optimizer).parameters
