"""``logger=csv``: Lightning's CSVLogger in the job's folder, ``csv/``: ``metrics.csv`` (a row per logged step:
the epochs' curves, then the run's figures under ``run/``) and ``hparams.yaml`` (the run's knobs and labels)."""

from __future__ import annotations

from lightning.pytorch.loggers import CSVLogger

from hwbench.loggers.tracker import Tracker


class JobCSVLogger(Tracker, CSVLogger):
    """A table any spreadsheet or pandas reads; a full disk costs it, never the run (one warning line)."""

    tracker = "the CSV logger"

    def log_tags(self, tags: dict[str, str]) -> None:
        """Beside the knobs in hparams.yaml: a CSV file has no other place for them."""
        self.log_hyperparams(tags)
