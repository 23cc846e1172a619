"""Optimizer steps captured in one CUDA graph, on static input buffers, and the batch shapes an epoch needs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from hwbench.execution.replay_timer import ReplayTimer

Step = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # one optimizer step: (images, labels) -> (loss, logits)


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
