"""MNIST (or random tensors of its shape) held in memory on the training device, served in batches.

Batches are slices of tensors that already sit on the device, reshuffled each epoch with a seeded
generator: no per-sample transforms and no worker processes, so the benchmark measures the hardware,
not Python data loading.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from hwbench.data.mnist_files import MNIST_TEST_SIZE, MNIST_TRAIN_SIZE, ensure_mnist


def default_root() -> str:
    """``$HWBENCH_DATA`` when set, else ``data/`` in the current folder (beside ``outputs/``)."""
    return os.environ.get("HWBENCH_DATA") or str(Path("data").resolve())


Batch = tuple[Tensor, Tensor]


class TensorBatches:
    """Batches sliced from in-memory tensors; a seeded generator reshuffles them every epoch.

    With ``group=K`` it yields lists of K consecutive batches, so that a training step can take K
    optimizer steps (Keras' ``steps_per_execution``): the batches and their order stay the same.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        group: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.x, self.y, self.batch_size, self.group = x, y, batch_size, group
        self.rank, self.world_size = rank, world_size
        # the same seed on every rank: every rank draws the same permutation and takes its own slice of it
        self.generator = torch.Generator(x.device).manual_seed(seed) if shuffle else None

    @property
    def steps(self) -> int:
        """Batches per epoch (per rank). Under DDP the last, incomplete global batch is dropped: every rank
        must take the same number of steps, of the same size, for the gradient all-reduce to be the mean."""
        if self.world_size == 1:
            return math.ceil(len(self.x) / self.batch_size)
        return len(self.x) // (self.batch_size * self.world_size)

    def shard(self, perm: Tensor) -> Tensor:
        """This rank's indices of an epoch's permutation: the rank-th slice of each global batch, so that the
        ranks' k-th batches together are the k-th batch one process would take at batch_size x world_size."""
        global_batches = perm[: self.steps * self.batch_size * self.world_size]
        return global_batches.view(self.steps, self.world_size, self.batch_size)[:, self.rank].reshape(-1)

    def __len__(self) -> int:
        if self.world_size > 1 and self.generator is None:  # an evaluation shard
            return math.ceil(len(range(self.rank, len(self.x), self.world_size)) / self.batch_size)
        return self.steps if self.group is None else math.ceil(self.steps / self.group)

    def __iter__(self) -> Iterator[Batch] | Iterator[list[Batch]]:
        batches = self.shuffled() if self.generator is not None else self.in_order()
        if self.group is None:
            yield from batches
        else:
            while group := list(itertools.islice(batches, self.group)):
                yield group

    def shuffled(self) -> Iterator[Batch]:
        """An epoch's batches in a fresh permutation. A CPU gathers batches as the training steps ask for them (a
        group of ``steps_per_execution`` at a time): a whole epoch gathered first wrote and re-read the split, 3% of
        an FFNN epoch on 2 cores. An accelerator gathers the epoch in one kernel, and its batches are free views."""
        x, y = self.x, self.y
        perm = torch.randperm(len(x), device=x.device, generator=self.generator)
        perm = perm if self.world_size == 1 else self.shard(perm)
        if x.device.type == "cpu":
            return ((x[i], y[i]) for i in perm.split(self.batch_size))
        return self.views(x[perm], y[perm])

    def in_order(self) -> Iterator[Batch]:
        """Evaluation's batches; under DDP items rank, rank + W, ...: disjoint, and the whole split together."""
        x, y = self.x, self.y
        if self.world_size > 1:
            x, y = x[self.rank :: self.world_size], y[self.rank :: self.world_size]
        return self.views(x, y)

    def views(self, x: Tensor, y: Tensor) -> Iterator[Batch]:
        return ((x[i : i + self.batch_size], y[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size))


class InMemoryDataModule(L.LightningDataModule):
    """Train/val/test splits as (images, labels) tensors on the trainer's device."""

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int = 5_000,
        train_limit: int | None = None,
        seed: int = 0,
        steps_per_execution: int = 1,
    ) -> None:
        super().__init__()
        self.batch_size, self.eval_batch_size, self.val_size = batch_size, eval_batch_size, val_size
        self.train_limit, self.seed, self.steps_per_execution = train_limit, seed, steps_per_execution
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.min_groups, self.skip_steps = 1, 0  # see plan_groups

    def plan_groups(self, min_groups: int, skip_steps: int = 0) -> None:
        """Make each epoch at least ``min_groups`` Lightning steps after its first ``skip_steps`` optimizer steps
        (smaller groups than ``steps_per_execution`` where an epoch is short): the training clock times the run in
        sub-windows that end at Lightning steps (hwbench/measure/stability.py)."""
        self.min_groups, self.skip_steps = min_groups, skip_steps

    @property
    def train_group(self) -> int:
        """Optimizer steps per Lightning step: ``steps_per_execution``, or fewer where ``plan_groups`` asks."""
        steps = TensorBatches(*self.splits["train"], self.batch_size, **self.shard).steps - self.skip_steps
        if steps <= 0 or math.ceil(steps / self.steps_per_execution) >= self.min_groups:
            return self.steps_per_execution
        return math.ceil(steps / self.min_groups)  # equal groups, but for the last: no group of a step or two

    def load(self, device: torch.device) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """The full training and test sets: float images in [0, 1] of shape (N, 1, 28, 28), int64 labels."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        (x, y), test = self.load(self.device)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed)).to(x.device)
        val_idx, train_idx = order[: self.val_size], order[self.val_size :]
        if self.train_limit is not None:  # its range is checked with the config's (hwbench.job.config.check)
            train_idx = train_idx[: self.train_limit]
        self.splits = {"train": (x[train_idx], y[train_idx]), "val": (x[val_idx], y[val_idx]), "test": test}

    @property
    def shard(self) -> dict[str, int]:
        """This process's rank and the world size (DDP: each rank serves its own slice of every split)."""
        if self.trainer is None:
            return {"rank": 0, "world_size": 1}
        return {"rank": self.trainer.global_rank, "world_size": self.trainer.world_size}

    def train_dataloader(self) -> TensorBatches:
        """Groups of ``train_group`` batches: each is one Lightning step of that many optimizer steps.
        ``batch_size`` is per device: the global batch is batch_size x world size."""
        train, group = self.splits["train"], self.train_group
        return TensorBatches(*train, self.batch_size, shuffle=True, seed=self.seed, group=group, **self.shard)

    def val_dataloader(self) -> TensorBatches | list:
        # no validation split (val_size=0) means no validation loop, as Lightning expects
        return TensorBatches(*self.splits["val"], self.eval_batch_size, **self.shard) if self.val_size else []

    def test_dataloader(self) -> TensorBatches:
        return TensorBatches(*self.splits["test"], self.eval_batch_size, **self.shard)


class MNISTDataModule(InMemoryDataModule):
    """The real MNIST, read with torchvision from ``root`` (fetched there first if missing)."""

    def __init__(self, root: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root or default_root()

    def load(self, device: torch.device) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        from torchvision.datasets import MNIST

        ensure_mnist(self.root)  # fetches what is missing; never lets a corrupt file through
        return tuple(  # type: ignore[return-value]
            (ds.data.to(device).unsqueeze(1).float().div_(255), ds.targets.to(device))
            for ds in (MNIST(self.root, train=train) for train in (True, False))
        )


class SyntheticDataModule(InMemoryDataModule):
    """Random tensors of MNIST's shape made on the device: a control for the cost of real data."""

    def __init__(self, root: str | None = None, **kwargs) -> None:  # root: the data config's, unused here
        super().__init__(**kwargs)

    def load(self, device: torch.device) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        gen = torch.Generator(device).manual_seed(self.seed)
        return tuple(  # type: ignore[return-value]
            (
                torch.rand(n, 1, 28, 28, device=device, generator=gen),
                torch.randint(0, 10, (n,), device=device, generator=gen),
            )
            for n in (MNIST_TRAIN_SIZE, MNIST_TEST_SIZE)
        )
