"""A tracker beside TensorBoard (CSV, MLflow): a view of the results record that never fails the run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from omegaconf import DictConfig

from hwbench.errors import one_line
from hwbench.loggers.figures import RUN, hparam_values, run_figures, run_tags
from hwbench.record.results import ResultsRecord

T = TypeVar("T")
log = logging.getLogger(__name__)
ENDS = {"ok": "success", "interrupted": "KILLED"}  # a record's status -> Lightning's (MLflow's) end of the run


def printable(text: str) -> str:
    """A library's or a server's words on one line, with no control characters for the terminal to act on."""
    return "".join(c if c.isprintable() else "?" for c in one_line(text, limit=200))


class Tracker:
    """Mixed in before a Lightning logger: its calls guarded; the run's knobs at the start, its figures and labels
    at the end. Where it fails (a server down, a store busy past its waits, a full disk) it says so in one
    warning line and logs nothing more: the run goes on, and its results.json keeps everything."""

    tracker = "a tracker"  # its name in that line
    broken = False  # set on the instance at its first failure

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this tracker cannot run here (its package is not installed), as one line; None: it can."""
        return None

    def attempt(self, call: Callable[[], T]) -> T:
        """One call to the tracker's backend (MLflow tries a busy store again)."""
        return call()

    def guarded(self, what: str, call: Callable[[], T]) -> T | None:
        if self.broken:
            return None
        try:
            return self.attempt(call)
        except Exception as err:
            if not self.broken:  # one line per run, however many calls then fail
                self.broken = True
                log.warning(f"{self.tracker} could not {what} ({printable(f'{type(err).__name__}: {err}')}): "
                            f"it logs nothing more of this run; results.json has every figure")  # fmt: skip
            return None

    @property
    def experiment(self) -> Any:
        return self.guarded("open its run", lambda: super(Tracker, self).experiment)  # type: ignore[misc]

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.guarded("log metrics", lambda: super(Tracker, self).log_metrics(metrics, step))  # type: ignore[misc]

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.guarded("log the run's settings", lambda: super(Tracker, self).log_hyperparams(params, *args, **kwargs))  # type: ignore[misc]

    def save(self) -> None:
        self.guarded("save", lambda: super(Tracker, self).save())  # type: ignore[misc]

    def finalize(self, status: str) -> None:
        """Lightning's, after fit and after test: only saved, since the run ends when its record does (MLflow
        would mark it FINISHED before its test, and a job that then died would look finished)."""
        self.save()

    def end(self, status: str) -> None:
        self.guarded("close the run", lambda: super(Tracker, self).finalize(status))  # type: ignore[misc]

    def log_tags(self, tags: dict[str, str]) -> None:
        """The run's labels, where this tracker keeps them."""
        raise NotImplementedError

    def log_start(self, cfg: DictConfig, record: ResultsRecord) -> None:
        """Once the job is set up: its knobs and hardware (what TensorBoard's HParams row shows), and its labels
        (status ``running``: a job whose process dies still has its run, with where it ran)."""
        self.log_hyperparams(hparam_values(cfg, record))
        self.guarded("label the run", lambda: self.log_tags(run_tags(record)))

    def log_end(self, record: ResultsRecord, step: int) -> None:
        """The finished run: its figures (an ok run's, as TensorBoard has them, at the last optimizer step), its
        labels, and its end."""
        if record.status == "ok":
            self.log_metrics({RUN + name: value for name, value in run_figures(record).items()}, step)
        self.guarded("label the run", lambda: self.log_tags(run_tags(record)))
        self.end(ENDS.get(record.status, "failed"))
