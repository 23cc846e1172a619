"""``logger=mlflow``: Lightning's MLFlowLogger, one MLflow run per job, in a store every run of an output root
shares (``sqlite:///<output_root>/mlflow.db``) or on a tracking server (``logger.tracking_uri=http://host:port``).

The experiment is named for the sweep (its folder's name) or ``hwbench`` for a single run; the run for the job's
folder. Lightning's logger would fall back to MLflow's deprecated file store (``./mlruns``) without a URI: the
config always gives one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from lightning.pytorch.loggers import MLFlowLogger

from hwbench.loggers.store import bounded_http, busy, mlflow_missing, quiet_mlflow, retried, sqlite_path
from hwbench.loggers.tracker import Tracker

T = TypeVar("T")
SINGLE_RUNS = "hwbench"  # the experiment of the runs that are no sweep's
SWEEP_MARK = "multirun.yaml"  # Hydra's sweeper writes it in the sweep's folder before any job starts
RACE = ("already exists", "UNIQUE constraint failed")  # two jobs made the sweep's experiment at once: one made it


def experiment_for(folder: Path) -> str:
    """The sweep's folder's name (``multiruns/<stamp>``) for a job of a sweep, else ``hwbench``."""
    return folder.parent.name if (folder.parent / SWEEP_MARK).is_file() else SINGLE_RUNS


def again(err: BaseException) -> bool:
    """Worth another try: a busy SQLite store, or the experiment made meanwhile by another job of the sweep."""
    return busy(err) or any(words in str(err) for words in RACE)


class JobMLFlowLogger(Tracker, MLFlowLogger):
    """One job's MLflow run. Its calls that meet a busy store wait and try again (bounded); any failure is one
    warning line, and the job goes on (hwbench.loggers.tracker)."""

    def __init__(self, save_dir: str, tracking_uri: str, experiment_name: str | None = None,
                 run_name: str | None = None, **kwargs: Any) -> None:  # fmt: skip
        import mlflow  # noqa: F401  (it sets up its logging on import: quieted here, before its store prints)

        quiet_mlflow()
        bounded_http()
        folder, db = Path(save_dir), sqlite_path(tracking_uri)
        self.tracker = f"MLflow ({tracking_uri})"
        # a local store's artifacts beside it (MLflow's default is ./mlruns under the working folder)
        kwargs.setdefault("artifact_location", str(Path(db).parent / "mlartifacts") if db else None)
        # Lightning's constructor opens the store (a SQLite file, its tables): guarded as every call is
        self.guarded("open its store", lambda: MLFlowLogger.__init__(
            self, experiment_name=experiment_name or experiment_for(folder), run_name=run_name or folder.name,
            tracking_uri=tracking_uri, **kwargs))  # fmt: skip

    @classmethod
    def unavailable(cls) -> str | None:
        return mlflow_missing()

    def attempt(self, call: Any) -> Any:
        return retried(call, again)

    @property
    def experiment(self) -> Any:
        return self.guarded("open its run", self.open_run)

    def open_run(self) -> Any:
        """The run, in its experiment: found, or made (Lightning's own way logs a warning when it makes one)."""
        if not self._initialized and self._experiment_id is None and self._run_id is None:
            self._experiment_id = self.experiment_id_by_name()
        return MLFlowLogger.experiment.fget(self)  # type: ignore[attr-defined]

    def experiment_id_by_name(self) -> str:
        client, name = self._mlflow_client, self._experiment_name
        found = client.get_experiment_by_name(name)
        if found is None:
            return client.create_experiment(name, artifact_location=self._artifact_location)
        if found.lifecycle_stage == "deleted":
            restore = f"mlflow experiments restore --experiment-id {found.experiment_id}"
            raise ValueError(f"its experiment {name!r} was deleted: {restore}, or set logger.mlflow.experiment_name")
        return found.experiment_id

    def log_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.experiment.log_batch(self.run_id, tags=[RunTag(key, value) for key, value in tags.items()])
