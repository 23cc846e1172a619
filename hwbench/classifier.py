"""One LightningModule trains any of the nets as a 10-way classifier."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import ParallelStrategy
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from hwbench.errors import ConfigError
from hwbench.graphed import GraphedStep

NUM_CLASSES = 10


def _empty_outputs() -> dict[str, list]:
    return {"loss": [], "size": [], "logits": [], "target": []}


class Classifier(L.LightningModule):
    """Cross-entropy on the net's logits (softmax folded into the loss), accuracy from torchmetrics.

    A training step gets a group of batches (``steps_per_execution``) and takes one plain optimizer step
    per batch, as a hand-written loop would, so Lightning's per-step machinery is paid once per group.
    Each step only keeps references to its loss and logits on the device (no kernel, log or host sync of
    its own); torchmetrics turns them into the epoch's loss and accuracy at the epoch's end. A net
    compiled with CUDA graphs reuses its output buffer: ``copy_logits`` keeps a copy instead.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        one_hot_targets: bool = False,
        channels_last: bool = False,
        copy_logits: bool = False,
        graphed: bool = False,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False  # the optimizer steps are taken in training_step, see above
        self.optimizer_steps = 0
        self.diverged_epoch: int | None = None  # the epoch whose mean training loss was not finite
        self.net, self.make_optimizer, self.make_scheduler = net, optimizer, scheduler
        self.one_hot_targets, self.channels_last, self.copy_logits = one_hot_targets, channels_last, copy_logits
        self.graphed, self.graph = graphed, None  # execution=graph: the step GraphCapture captures before training
        self.metrics = nn.ModuleDict()
        for split in ("train", "val", "test"):
            self.metrics[f"{split}_loss"] = MeanMetric(nan_strategy="disable")  # a diverged run logs NaN
            self.metrics[f"{split}_acc"] = MulticlassAccuracy(NUM_CLASSES, average="micro")  # plain accuracy
        self.outputs: dict[str, dict[str, list]] = {split: _empty_outputs() for split in ("train", "val", "test")}

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        # Keras' categorical cross-entropy on one-hot labels; the same number as on class indices
        target = F.one_hot(y, NUM_CLASSES).to(logits.dtype) if self.one_hot_targets else y
        return F.cross_entropy(logits, target)

    def _keep(self, split: str, loss: Tensor, logits: Tensor, y: Tensor, copy: bool) -> None:
        out = self.outputs[split]
        out["loss"].append(loss.detach().clone() if copy else loss.detach())
        out["size"].append(len(y))
        out["logits"].append(logits.detach().clone() if copy else logits.detach())
        out["target"].append(y)

    def _step(self, batch: tuple[Tensor, Tensor], split: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        self._keep(split, loss, logits, y, copy=self.copy_logits)
        return loss

    def capture(self, x: Tensor, y: Tensor) -> None:
        """execution=graph: capture the training step for batches shaped like ``x`` (``GraphCapture`` calls
        this before training, off the clock)."""
        bf16 = self.trainer.precision == "bf16-mixed"  # autocast's cache must be off inside a graph
        autocast = (lambda: torch.autocast("cuda", torch.bfloat16, cache_enabled=False)) if bf16 else nullcontext
        self.graph = GraphedStep(self, self.optimizers(use_pl_optimizer=False), self.loss, x, y, autocast)

    def _graphed_step(self, batch: tuple[Tensor, Tensor]) -> bool:
        """One replay of the captured step; False for a batch of another shape (the epoch's last), which
        then takes the eager step: the same math on other buffers."""
        x, y = batch
        if self.graph is None or x.shape != self.graph.static_x.shape:
            return False
        loss, logits = self.graph(x, y)
        self._keep("train", loss, logits, y, copy=True)  # the next replay overwrites the static outputs
        return True

    def _log_epoch(self, split: str) -> None:
        out, self.outputs[split] = self.outputs[split], _empty_outputs()
        if not out["loss"]:
            return
        loss, acc = self.metrics[f"{split}_loss"], self.metrics[f"{split}_acc"]
        loss.update(torch.stack(out["loss"]).float(), torch.tensor(out["size"], device=self.device))
        acc.update(torch.cat(out["logits"]).argmax(dim=1), torch.cat(out["target"]))
        mean_loss = loss.compute()
        # "step" sets the x-axis of this epoch's points: optimizer steps, whatever steps_per_execution is
        # torchmetrics' compute sums the ranks' states: whole-split figures, the same on every rank (sync_dist
        # only says so to Lightning; one tiny all-reduce an epoch)
        values = {f"{split}/loss": mean_loss, f"{split}/acc": acc.compute()}
        self.log_dict(values, sync_dist=self.trainer.world_size > 1)
        self.log("step", float(self.optimizer_steps), sync_dist=self.trainer.world_size > 1)
        # checked here, once an epoch, not per step (a host sync); EarlyStopping(check_finite=True) runs
        # before this hook and would see the loss an epoch late
        if split == "train" and not torch.isfinite(mean_loss):
            self.diverged_epoch = self.current_epoch + 1
            self.trainer.should_stop = True
        loss.reset()
        acc.reset()

    def training_step(self, batches: list[tuple[Tensor, Tensor]], batch_idx: int) -> None:
        optimizer = self.optimizers(use_pl_optimizer=False)
        scheduler = self.lr_schedulers()
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)  # set for 16-mixed only
        # DDP all-reduces gradients only through Lightning's backward (it re-arms the reducer for each of the
        # group's backwards; a plain backward would not sync); one device keeps the hook-free plain backward
        distributed = isinstance(self.trainer.strategy, ParallelStrategy)  # DDP, even on one device
        for batch in batches:
            if self.graphed and self._graphed_step(batch):
                continue
            loss = self._step(batch, "train")
            optimizer.zero_grad(set_to_none=not self.graphed)  # a graph keeps writing the grads it captured
            if distributed:
                self.manual_backward(loss)  # under 16-mixed the precision plugin scales the loss with the scaler
            else:
                (loss if scaler is None else scaler.scale(loss)).backward()
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)
                scaler.update()
            if scheduler is not None:
                scheduler.step()
        self.optimizer_steps += len(batches)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        try:  # the optimizer's own checks are the ones that know its valid values
            optimizer = self.make_optimizer(self.parameters())
            if self.make_scheduler is None:
                return optimizer
            # schedulers are built for the run's total optimizer steps (e.g. OneCycleLR's total_steps)
            steps = self.trainer.max_epochs * self.trainer.datamodule.train_dataloader().steps
            return {"optimizer": optimizer, "lr_scheduler": self.make_scheduler(optimizer, total_steps=steps)}
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{err}: fix the optim settings (python -m hwbench --cfg job shows them)") from err
