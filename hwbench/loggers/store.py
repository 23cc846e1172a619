"""MLflow's side of ``logger=mlflow``, without Lightning: is it installed, where its store is, a store's tables
made once before a sweep's jobs start, and bounded waits where the store or the server is busy or down.

SQLite written by parallel jobs can say "database is locked" (mlflow issue #6490): each call is tried again
after a bounded wait. A tracking server that is down is tried a few times, not MLflow's default 7 with a
backoff that grows to minutes: the tracker is a view, and the job goes on without it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from hwbench.commands import command

T = TypeVar("T")
MLFLOW_EXTRA = "install -e '.[mlflow]'"  # after pip, as this shell runs it (hwbench.commands)
SQLITE = "sqlite:///"
BUSY = ("database is locked", "database table is locked")  # SQLite's words when another job holds its lock
# seconds between tries of a call a busy store refused; MLflow itself waits up to 20 s for SQLite's lock (its
# busy_timeout) before it says so: about 84 s at most, then the tracker's one warning line
WAITS = (0.5, 1.0, 2.0)
# a tracking server's requests, unless the user set them: 2 retries 1 s apart, 10 s to answer (MLflow's
# defaults: 7 retries, backoff factor 2, 120 s)
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}  # fmt: skip


def mlflow_missing() -> str | None:
    """The one line for ``logger=mlflow`` where MLflow is not installed, else None."""
    try:
        found = importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):  # a package hidden as absent (sys.modules["mlflow"] = None)
        found = False
    return None if found else f"logger=mlflow needs MLflow, which is not installed: {command('pip')} {MLFLOW_EXTRA}"


def uses_mlflow(logger: Mapping[str, object] | None) -> bool:
    """The ``logger`` config group's choice (``cfg.logger``) includes MLflow."""
    return logger is not None and "mlflow" in logger


def sqlite_path(uri: str) -> str | None:
    """The database file of a ``sqlite:///`` tracking URI, else None (a server's http:// URI)."""
    return uri[len(SQLITE) :] if uri.startswith(SQLITE) else None


def busy(err: BaseException | None) -> bool:
    """SQLite refused the call because another job held its lock (the words may be in a wrapped error)."""
    while err is not None:
        if any(words in str(err) for words in BUSY):
            return True
        err = err.__cause__ or err.__context__
    return False


def retried(call: Callable[[], T], again: Callable[[BaseException], bool] = busy) -> T:
    """``call()``, tried again after each of WAITS while it fails as ``again`` says (a busy store)."""
    for wait in WAITS:
        try:
            return call()
        except Exception as err:
            if not again(err):
                raise
            time.sleep(wait)
    return call()


def bounded_http() -> None:
    """A tracking server that is down costs a few seconds, once: MLflow reads these at each request."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def quiet_mlflow() -> None:
    """MLflow prints its INFO lines (creating a store's tables) through a handler of its own, alembic one per
    migration, urllib3 one per retry of a server that is down: hwbench's log takes MLflow's warnings, as it does
    Lightning's, and a tracker that fails says so in one line of its own (hwbench.loggers.tracker). Idempotent."""
    mlflow_logger = logging.getLogger("mlflow")
    mlflow_logger.handlers.clear()
    mlflow_logger.propagate = True
    mlflow_logger.setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def prepare_store(uri: str) -> None:
    """A SQLite store's tables, made now (its file and folder too): a sweep's jobs then find them, and none of
    them migrates the schema while another does."""
    if (path := sqlite_path(uri)) is None:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    import mlflow  # noqa: F401  (its logging is set up on import: quieted after)
    from mlflow import MlflowClient

    quiet_mlflow()
    retried(lambda: MlflowClient(uri).search_experiments(max_results=1))
