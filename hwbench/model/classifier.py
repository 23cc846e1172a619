"""One LightningModule trains any of the nets as a 10-way classifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import ParallelStrategy
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from hwbench.commands import command
from hwbench.errors import ConfigError
from hwbench.execution import Eager, Execution, Stepping
from hwbench.record.parts import SplitFigures

NUM_CLASSES = 10


def _empty_outputs() -> dict[str, list]:
    return {"loss": [], "size": [], "logits": [], "target": []}


class Classifier(L.LightningModule):
    """Cross-entropy on the net's logits (softmax folded into the loss), accuracy from torchmetrics.

    A training step gets a group of batches (``steps_per_execution``) and hands them to the execution
    strategy, which takes one optimizer step per batch (``hwbench.execution``): Lightning's per-step machinery
    is paid once per group. Each step only keeps references to its loss and logits on the device (no kernel,
    log or host sync of its own); torchmetrics turns them into the epoch's loss and accuracy at the epoch's end.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        execution: Execution | None = None,
        one_hot_targets: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False  # the strategy takes the optimizer steps, see above
        self.execution = execution or Eager()
        self.optimizer_steps = 0
        self.diverged_epoch: int | None = None  # the epoch whose mean training loss was not finite
        self.net, self.make_optimizer, self.make_scheduler = net, optimizer, scheduler
        self.one_hot_targets, self.channels_last = one_hot_targets, channels_last
        self.metrics = nn.ModuleDict()
        for split in ("train", "val", "test"):
            self.metrics[f"{split}_loss"] = MeanMetric(nan_strategy="disable")  # a diverged run logs NaN
            self.metrics[f"{split}_acc"] = MulticlassAccuracy(NUM_CLASSES, average="micro")  # plain accuracy
        self.outputs: dict[str, dict[str, list]] = {split: _empty_outputs() for split in ("train", "val", "test")}
        self.figures: dict[str, SplitFigures] = {}  # each split's last epoch

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        # Keras' categorical cross-entropy on one-hot labels; the same number as on class indices
        target = F.one_hot(y, NUM_CLASSES).to(logits.dtype) if self.one_hot_targets else y
        return F.cross_entropy(logits, target)

    def keep(self, split: str, loss: Tensor, logits: Tensor, targets: Sequence[Tensor], copy: bool = False) -> None:
        """One or more steps' outputs, for the epoch's metrics: ``loss`` holds a mean loss per target batch,
        ``logits`` the batches' logits one after another. ``copy``: the buffers are reused by the next step."""
        out = self.outputs[split]
        loss, logits = loss.detach(), logits.detach()
        out["loss"].append(loss.clone().reshape(-1) if copy else loss.reshape(-1))
        out["logits"].append(logits.clone() if copy else logits)
        out["size"].extend(len(t) for t in targets)
        out["target"].extend(targets)

    def _evaluate(self, batch: tuple[Tensor, Tensor], split: str) -> None:
        x, y = batch
        logits = self(x)
        self.keep(split, self.loss(logits, y), logits, [y])

    def _log_epoch(self, split: str) -> None:
        out, self.outputs[split] = self.outputs[split], _empty_outputs()
        if not out["loss"]:
            return
        loss, acc = self.metrics[f"{split}_loss"], self.metrics[f"{split}_acc"]
        loss.update(torch.cat(out["loss"]).float(), torch.tensor(out["size"], device=self.device))
        acc.update(torch.cat(out["logits"]).argmax(dim=1), torch.cat(out["target"]))
        mean_loss, accuracy = loss.compute(), acc.compute()
        # the epoch's figures for the measuring callbacks (one host sync an epoch, never per step)
        self.figures[split] = SplitFigures(loss=float(mean_loss), acc=float(accuracy))
        # "step" sets the x-axis of this epoch's points: optimizer steps, whatever steps_per_execution is
        # torchmetrics' compute sums the ranks' states: whole-split figures, the same on every rank (sync_dist
        # only says so to Lightning; one tiny all-reduce an epoch)
        # the test's figures are the run's own: TensorBoard draws them with the others (hwbench/loggers/tensorboard.py)
        sync, curve = self.trainer.world_size > 1, split != "test"
        self.log_dict({f"{split}/loss": mean_loss, f"{split}/acc": accuracy}, sync_dist=sync, logger=curve)
        self.log("step", float(self.optimizer_steps), sync_dist=sync, logger=curve)
        # checked here, once an epoch, not per step (a host sync); EarlyStopping(check_finite=True) runs
        # before this hook and would see the loss an epoch late
        if split == "train" and not torch.isfinite(mean_loss):
            self.diverged_epoch = self.current_epoch + 1
            self.trainer.should_stop = True
        loss.reset()
        acc.reset()

    def training_step(self, batches: list[tuple[Tensor, Tensor]], batch_idx: int) -> None:
        self.execution.train(self, batches)
        self.optimizer_steps += len(batches)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    @property
    def total_steps(self) -> int:
        """The run's optimizer steps: what a schedule is built for (e.g. OneCycleLR's total_steps)."""
        return (self.trainer.max_epochs or 1) * self.trainer.datamodule.train_dataloader().steps

    @cached_property
    def stepping(self) -> Stepping:
        """What the strategy updates with, once the optimizer exists (Lightning built it in its setup)."""
        trainer = self.trainer
        distributed = isinstance(trainer.strategy, ParallelStrategy)  # DDP, even on one device
        return Stepping(
            optimizer=self.optimizers(use_pl_optimizer=False),  # type: ignore[arg-type]
            total_steps=self.total_steps,
            scheduler=self.lr_schedulers(),  # type: ignore[arg-type]
            schedule=self.make_scheduler,
            scaler=getattr(trainer.precision_plugin, "scaler", None),  # set for 16-mixed only
            # DDP all-reduces gradients only through Lightning's backward (it re-arms the reducer for each of the
            # group's backwards); one device keeps the hook-free plain backward
            synced_backward=self.manual_backward if distributed else None,
            forward_context=trainer.precision_plugin.forward_context,
            bf16=trainer.precision == "bf16-mixed",
        )

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        try:  # the optimizer's own checks are the ones that know its valid values
            options = self.execution.optimizer_options(getattr(self.make_optimizer, "func", self.make_optimizer))
            optimizer = self.make_optimizer(self.parameters(), **options)
            if self.make_scheduler is None:
                return optimizer
            scheduler = self.make_scheduler(optimizer, total_steps=self.total_steps)
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{err}: fix the optim settings ({command('hwbench')} --cfg job shows them)") from err
