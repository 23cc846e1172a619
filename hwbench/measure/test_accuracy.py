"""The record's metrics part: test accuracy and loss, over the whole test split (all ranks together)."""

from __future__ import annotations

from lightning import Callback, LightningModule, Trainer

from hwbench.record.parts import Metrics, SplitFigures


class TestAccuracy(Callback):
    """Keeps the test's figures as soon as they are final: a signal in the inference timing after it loses none."""

    __test__ = False  # a callback, not a pytest class

    def __init__(self) -> None:
        self.metrics: Metrics | None = None

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        test: SplitFigures | None = getattr(pl_module, "figures", {}).get("test")
        if test is not None:
            self.metrics = Metrics(test_acc=test.acc, test_loss=test.loss)

    def record_parts(self) -> dict[str, Metrics]:
        return {"metrics": self.metrics} if self.metrics is not None else {}
