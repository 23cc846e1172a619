"""A progress bar in optimizer steps: a Lightning step here is ``steps_per_execution`` of them."""

from __future__ import annotations

import sys
from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf


class StepProgressBar(TQDMProgressBar):
    """TQDM, refreshed at most once per Lightning step (the rich bar redraws every step and slowed the
    FFNN on a CPU), counting optimizer steps and their rate. On a terminal only: in a file or a pipe each
    redraw would be a line of its own, with escape codes, and the epoch lines already say how it goes."""

    def __init__(self, refresh_rate: int = 1) -> None:
        super().__init__(refresh_rate=refresh_rate)
        if not sys.stdout.isatty():
            self.disable()

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.train_dataloader.steps  # optimizer steps this epoch

    def init_train_tqdm(self) -> Tqdm:
        bar = super().init_train_tqdm()
        bar.unit = "step"
        return bar

    def init_test_tqdm(self) -> Tqdm:
        bar = super().init_test_tqdm()
        bar.leave = False  # the job's closing line gives the test accuracy
        return bar

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Lightning's, whose bar says "Epoch 0" for the first: this one counts as the log lines do ("epoch 1/5"),
        named before the bar is drawn again."""
        bar = self.train_progress_bar
        bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}", refresh=False)
        bar.reset(total=convert_inf(self.total_train_batches))
        bar.initial = 0
        self.epoch_start = pl_module.optimizer_steps  # the module counts the optimizer steps it takes

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        last = batch_idx + 1 == trainer.num_training_batches
        if self.is_enabled and ((batch_idx + 1) % self.refresh_rate == 0 or last):
            self.train_progress_bar.n = pl_module.optimizer_steps - self.epoch_start
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))  # also redraws the bar
