"""``execution=graph`` and ``execution=fused``: whole optimizer steps captured in CUDA graphs and replayed.

PyTorch's whole-network capture recipe (torch.cuda.graph): warm up on a side stream, undo the warm-up, capture
on static input buffers; then a step is a copy into those buffers and one replay, and the host launches one
graph instead of a few dozen kernels.

- ``graph`` captures the eager kernels, one optimizer step per graph.
- ``fused`` first hands forward and loss to Inductor (``torch.compile``: the elementwise work fused into
  few kernels, backward included), steps a fused optimizer, reads the learning rate from a device table
  (``LrTable``), and captures a whole Lightning step (``steps_per_graph`` optimizer steps) in one graph: the
  host launches one replay per group of steps.

Every batch shape the epoch has (full batches, and the shorter last one) gets its graphs before training, so
no step runs outside a graph.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import torch
from hydra.utils import get_class
from omegaconf import DictConfig
from torch import Tensor, nn

from hwbench.errors import ConfigError, DeviceUnavailable
from hwbench.execution.eager import CUDA_GRAPH_MODES
from hwbench.execution.lr_table import LrTable, scheduled_rates
from hwbench.execution.replay_timer import ReplayTimer
from hwbench.execution.strategy import Batch, Execution

if TYPE_CHECKING:
    from hwbench.data.datamodules import InMemoryDataModule
    from hwbench.model.classifier import Classifier

Step = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # one optimizer step: (images, labels) -> (loss, logits)
WARMUP_PASSES = 3  # the recipe's side-stream warm-up: cuDNN's autotuning, the allocator and lazy state settle first


class CapturedSteps:
    """Optimizer steps on batches of the given sizes, one after another, captured in one CUDA graph.

    The static inputs hold the steps' batches back to back; the outputs are every step's loss and logits
    (overwritten by the next replay: copy what must outlive it).
    """

    def __init__(self, sizes: tuple[int, ...], x: Tensor, y: Tensor) -> None:
        self.sizes = sizes
        rows = torch.arange(sum(sizes), device=x.device) % len(x)  # real images for the warm-up passes
        self.x, self.y = x[rows].clone(), y[rows].clone()
        self.graph = torch.cuda.CUDAGraph()
        self.losses: Tensor | None = None
        self.logits: Tensor | None = None

    def run(self, step: Step) -> tuple[Tensor, Tensor]:
        """The steps, eagerly (warm-up) or while a capture records them."""
        batches = zip(self.x.split(self.sizes), self.y.split(self.sizes), strict=True)
        outputs = [step(xb, yb) for xb, yb in batches]
        return torch.stack([loss for loss, _ in outputs]), torch.cat([logits for _, logits in outputs])

    def capture(self, step: Step) -> None:
        with torch.cuda.graph(self.graph):
            self.losses, self.logits = self.run(step)

    def __call__(self, xs: Sequence[Tensor], ys: Sequence[Tensor], timer: ReplayTimer) -> tuple[Tensor, Tensor]:
        torch.cat(xs, out=self.x)  # one copy for all the steps
        torch.cat(ys, out=self.y)
        timer.replay(self.graph)
        assert self.losses is not None and self.logits is not None
        return self.losses, self.logits


def chunk_sizes(images: int, batch: int, group: int, steps_per_graph: int) -> set[tuple[int, ...]]:
    """The batch sizes of every graph an epoch replays: its batches (the last one shorter when ``batch`` does
    not divide ``images``), in Lightning steps of ``group`` batches, each cut into graphs of ``steps_per_graph``."""
    sizes = [batch] * (images // batch) + ([images % batch] if images % batch else [])
    groups = (sizes[i : i + group] for i in range(0, len(sizes), group))
    return {tuple(g[j : j + steps_per_graph]) for g in groups for j in range(0, len(g), steps_per_graph)}


class Graphed(Execution):
    """Optimizer steps replayed from CUDA graphs: ``graph`` (eager kernels, a step per graph) or ``fused``."""

    prepares = True

    def __init__(
        self,
        kind: str = "graph",
        compile_mode: str | None = None,
        steps_per_graph: int = 1,
        fused_optimizer: bool = False,
    ) -> None:
        self.kind, self.mode, self.steps_per_graph = kind, compile_mode, steps_per_graph
        self.fused_optimizer = fused_optimizer
        self.timer = ReplayTimer()
        self.graphs: dict[tuple[int, ...], CapturedSteps] = {}  # the steps' batch sizes -> their graph
        self.lr: LrTable | None = None

    # ---- before anything is built -----------------------------------------------------------------------
    def refuse(self, cfg: DictConfig, accelerator: str) -> None:
        optimizer = get_class(cfg.optim.optimizer._target_)
        has_fused = "fused" in inspect.signature(optimizer).parameters
        unsupported = {
            "device.precision=16-mixed (its GradScaler syncs with the host)": str(cfg.device.precision) == "16-mixed",
            "DDP (device.devices > 1 or device.strategy=ddp)": cfg.device.devices > 1 or cfg.device.strategy == "ddp",
            f"an LR scheduler (optim){'' if self.fused_optimizer else ': use execution=fused, which follows one'}":
                cfg.optim.get("scheduler") and not (self.fused_optimizer and has_fused),
            f"{optimizer.__name__} (no fused CUDA implementation: use SGD, Adam or AdamW)":
                self.fused_optimizer and not has_fused,
            f"execution.compile_mode={self.mode} (it captures CUDA graphs of its own)": self.mode in CUDA_GRAPH_MODES,
        }  # fmt: skip
        for what, present in unsupported.items():
            if present:
                raise ConfigError(f"execution={self.kind} does not combine with {what}; or use execution=eager")
        if accelerator != "cuda":
            raise DeviceUnavailable(
                f"execution={self.kind} captures CUDA graphs and this job runs on {accelerator}: "
                f"use a CUDA GPU (device=gpu) or execution=eager"
            )

    def optimizer_options(self, optimizer: type) -> dict[str, object]:
        """Capturable state (a CUDA graph may not read the step count on the host), and the fused kernel."""
        accepts = inspect.signature(optimizer).parameters
        options = {"capturable": True} if "capturable" in accepts else {}
        return options | ({"fused": True} if self.fused_optimizer else {})

    # ---- off the clock ------------------------------------------------------------------------------------
    def prepare(self, module: Classifier, data: InMemoryDataModule) -> None:
        optimizer = module.optimizers(use_pl_optimizer=False)
        x, y = data.splits["train"]
        if module.make_scheduler is not None:
            steps = module.trainer.max_epochs * data.train_dataloader().steps
            self.lr = LrTable(scheduled_rates(optimizer, module.make_scheduler, steps), x.device)
            self.lr.attach(optimizer)
        shapes = chunk_sizes(len(y), data.batch_size, data.steps_per_execution, self.steps_per_graph)
        self.graphs = {sizes: CapturedSteps(sizes, x, y) for sizes in sorted(shapes)}
        step = partial(self.step, optimizer, self.forward_loss(module))
        weights = copy.deepcopy(module.state_dict())
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for graph in self.graphs.values():
                for _ in range(max(1, WARMUP_PASSES // len(graph.sizes))):
                    graph.run(step)
        torch.cuda.current_stream().wait_stream(side)
        undo(module, optimizer, weights)  # in place: the graphs will read and write these very tensors
        if self.lr is not None:
            self.lr.rewind()
        for graph in self.graphs.values():
            graph.capture(step)

    def forward_loss(self, module: Classifier) -> Step:
        bf16 = module.trainer.precision == "bf16-mixed"

        def forward_loss(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            with torch.autocast("cuda", torch.bfloat16, enabled=bf16, cache_enabled=False):  # no cache in a graph
                logits = module(x)
                return module.loss(logits, y), logits

        if self.mode is None:
            return forward_loss
        torch.compiler.reset()  # as a fresh process would: the jobs of a multirun share one
        return torch.compile(forward_loss, mode=self.mode, dynamic=False)

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
    def train(self, module: Classifier, batches: list[Batch]) -> None:
        for first in range(0, len(batches), self.steps_per_graph):  # one replay per graph's worth of steps
            xs, ys = zip(*batches[first : first + self.steps_per_graph], strict=True)
            losses, logits = self.graphs[tuple(len(t) for t in ys)](xs, ys, self.timer)
            module.keep("train", losses, logits, ys, copy=True)

    def busy_timer(self) -> ReplayTimer:
        return self.timer


def undo(module: nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, Tensor]) -> None:
    """Back to the weights (and buffers) before warm-up, with the optimizer's state as before its first step
    (SGD's momentum and Adam's moments and step count: a zero updates exactly as the missing state would)."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            tensor.copy_(weights[name])
        for state in optimizer.state.values():
            for value in state.values():
                if isinstance(value, Tensor):
                    value.zero_()
