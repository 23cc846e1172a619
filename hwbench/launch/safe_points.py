"""Where a stop signal that arrived while it could not be raised is raised during fit and test."""

from __future__ import annotations

from typing import Any

from lightning import Callback

from hwbench.launch.signals import StopSignals


class SafePoints(Callback):
    """Where a held stop signal is raised during fit and test: after each Lightning step (never inside one)."""

    def __init__(self, stop: StopSignals | None) -> None:
        self.safe_point = stop.safe_point if stop is not None else (lambda: None)

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self.safe_point()

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self.safe_point()

    def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self.safe_point()
