"""The logger group (conf/logger/) against the real things: a SQLite MLflow store and a real ``mlflow server`` on
127.0.0.1, each read back with MLflow's own client; Lightning's CSV file; TensorBoard's events. Every run is a
real ``python -m hwbench`` in a subprocess."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import CLOCK_ONLY, scalars, spelled
from hwbench.record.results import ResultsRecord, read_record

RUN = ("device=cpu", "arch=ffnn", "data.train_limit=2000", *CLOCK_ONLY)  # 16 optimizer steps an epoch
MISSING_LINE = "error: logger=mlflow needs MLflow, which is not installed: pip install -e '.[mlflow]'"
MLFLOW_BUSY_S = 20  # how long MLflow waits for a locked SQLite store before it says so (its busy_timeout)
SERVER_START_S = 180  # a server's first start imports much of MLflow: slow on a busy 2-core machine


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


needs_mlflow = pytest.mark.skipif(not installed("mlflow"), reason="MLflow is not installed: pip install -e '.[mlflow]'")


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def records(root: Path) -> dict[str, ResultsRecord]:
    return {p.parent.name: read_record(p) for p in root.rglob("results.json")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``mlflow server`` on 127.0.0.1 with a SQLite backend, in a process group of its own (uvicorn's workers)."""

    def __init__(self, folder: Path) -> None:
        self.db, self.port = folder / "server.db", free_port()
        self.url, self.log = f"http://127.0.0.1:{self.port}", folder / "server.log"
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.db}",
               "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", "1"]  # fmt: skip
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner: one process less
        with self.log.open("w") as log:
            self.process = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)  # fmt: skip

    def wait_up(self) -> str:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return self.url
            time.sleep(0.5)
        raise AssertionError(f"mlflow server not up in {SERVER_START_S} s: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # the server and its workers, at once: a crash
        self.process.wait(timeout=30)


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("mlflow-server"))
    yield started
    started.kill()


def mlflow_runs(uri: str) -> dict[str, Any]:
    """Every run in the store, by its name, with its experiment's name as ``run.experiment``."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            run.experiment = experiment.name
            runs[run.info.run_name] = run
    return runs


def check_run(uri: str, run: Any, record: ResultsRecord) -> None:
    """An MLflow run holds what the job's record does: the settings as params, the host as a tag, one validation
    accuracy point per epoch, the test accuracy and the headline training speed."""
    from mlflow import MlflowClient

    assert run.data.params["arch"] == record.arch and run.data.params["batch_size"] == "128"
    assert run.data.tags["host"] == record.fingerprint.host == run.data.params["host"]
    assert run.data.tags["status"] == record.status == "ok"
    history = MlflowClient(uri).get_metric_history(run.info.run_id, "val/acc")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        [e.val_acc for e in record.training.epochs]
    )  # one point per epoch
    assert run.data.metrics["run/test_acc"] == pytest.approx(record.metrics.test_acc)
    assert run.data.metrics["run/train_samples_per_sec"] == pytest.approx(record.train_speed.samples_per_sec)
    assert run.data.metrics["perf/train_samples_per_sec"] > 0


def test_logger_mlflow_without_mlflow_installed_is_one_line_and_exit_1(data_root, tmp_path) -> None:
    hide = tmp_path / "hide"
    hide.mkdir()  # sitecustomize runs at every interpreter's start: hwbench's and its job process's
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['mlflow'] = None  # not installed\n")
    env = {**os.environ, "HWBENCH_DATA": data_root, "PYTHONPATH": str(hide)}
    cmd = [sys.executable, "-m", "hwbench", "logger=mlflow", "epochs=1", *RUN, f"output_root={tmp_path / 'out'}"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    line = MISSING_LINE.replace(": pip ", f": {spelled('pip', tmp_path)} ")  # as this shell runs it
    assert result.returncode == 1 and result.stderr.strip() == line
    assert not (tmp_path / "out").exists()  # refused before any folder, record or training


@needs_mlflow
@pytest.mark.skipif(not installed("hydra_plugins.hydra_submitit_launcher"),
                    reason="the cluster extra is not installed: pip install -e '.[cluster]'")  # fmt: skip
def test_a_submitit_local_sweep_of_three_jobs_at_once_leaves_three_runs_in_the_sqlite_store(hwbench_cli, tmp_path):
    args = ("-m", "hydra/launcher=submitit_local", "logger=mlflow", "seed=0,1,2", "epochs=1", "device.threads=1")
    ok(hwbench_cli(*args, *RUN))
    (sweep,) = (tmp_path / "outputs" / "multiruns").iterdir()
    jobs = records(sweep)
    assert sorted(jobs) == ["0_ffnn_cpu_e1", "1_ffnn_cpu_e1", "2_ffnn_cpu_e1"]
    assert all(r.status == "ok" for r in jobs.values())
    uri = f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"  # the default: every run of the output root
    runs = mlflow_runs(uri)
    assert sorted(runs) == sorted(jobs)  # one run per job, named for its folder: none lost to a locked store
    for name, run in runs.items():
        assert (run.experiment, run.info.status) == (sweep.name, "FINISHED")  # the sweep's experiment
        assert run.data.params["seed"] == str(jobs[name].config["seed"])
        check_run(uri, run, jobs[name])
    assert not list(sweep.rglob("events.out.tfevents*"))  # logger=mlflow alone: no TensorBoard, no CSV
    assert not list(sweep.rglob("*.csv"))
    assert not (tmp_path / "mlruns").exists()  # never MLflow's deprecated file store in the working folder


def mlflow_warnings(lines: list[str]) -> list[str]:
    """The warnings about MLflow, and any line of its HTTP requests' retries (urllib3's)."""
    return [line for line in lines if (line.startswith(("warning:", "error:")) and "mlflow" in line.lower())
            or "Retrying" in line or "urllib3" in line]  # fmt: skip


@needs_mlflow
def test_many_loggers_and_a_tracking_server_over_http_then_down_mid_run_with_one_warning(
    hwbench_cli, data_root, tmp_path, server: Server
) -> None:
    url = server.wait_up()
    first = ok(hwbench_cli("logger=many", f"logger.tracking_uri={url}", "epochs=2", *RUN, "output_root=first"))
    ((name, record),) = records(tmp_path / "first").items()
    job = tmp_path / "first" / "runs" / name
    assert record.status == "ok" and len(record.training.epochs) == 2
    runs = mlflow_runs(url)  # over HTTP
    assert list(runs) == [name] and runs[name].info.status == "FINISHED"
    assert runs[name].experiment == "hwbench"  # a single run's experiment
    check_run(url, runs[name], record)
    assert not mlflow_warnings(first.stdout.splitlines() + first.stderr.splitlines())
    assert not (tmp_path / "first" / "mlflow.db").exists()  # the server's store, not a local one

    assert scalars(job)["run/test_acc"][-1] == pytest.approx(record.metrics.test_acc)  # TensorBoard's views stay
    with (job / "csv" / "metrics.csv").open(newline="") as table:
        rows = list(csv.DictReader(table))
    per_epoch = [float(row["val/acc"]) for row in rows if row["val/acc"]]
    assert per_epoch == pytest.approx([e.val_acc for e in record.training.epochs])
    (end,) = [row for row in rows if row["run/test_acc"]]
    assert float(end["run/test_acc"]) == pytest.approx(record.metrics.test_acc)
    assert "arch: ffnn" in (job / "csv" / "hparams.yaml").read_text()

    # the server goes down once the first epoch is logged: the run ends ok, with one line about it
    env = {**os.environ, "HWBENCH_DATA": data_root, "PYTHONUNBUFFERED": "1"}
    args = ("logger=[tensorboard,mlflow]", f"logger.tracking_uri={url}", "epochs=2", *RUN, "output_root=second")
    job_process = subprocess.Popen([sys.executable, "-m", "hwbench", *args], cwd=tmp_path, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    lines = []
    for line in job_process.stdout:  # type: ignore[union-attr]
        lines.append(line.rstrip("\n"))
        if line.startswith("epoch 1/2 done"):
            server.kill()
    assert job_process.wait(timeout=600) == 0, "\n".join(lines[-40:])
    ((_, record),) = records(tmp_path / "second").items()
    assert record.status == "ok"
    (warning,) = mlflow_warnings(lines)
    assert warning.startswith(f"warning: MLflow ({url}) could not") and "results.json has every figure" in warning
    assert not [line for line in lines if "Traceback" in line]
    (folder,) = (tmp_path / "second" / "runs").iterdir()
    assert scalars(folder)["run/test_acc"][-1] == pytest.approx(record.metrics.test_acc)  # TensorBoard has it all
    # what reached the server before it went down is in its store: the run, still running, and its first epoch
    from mlflow import MlflowClient

    store = f"sqlite:///{server.db}"
    (down,) = [run for run in mlflow_runs(store).values() if run.info.run_name == folder.name]
    assert down.info.status == "RUNNING" and down.data.params["arch"] == "ffnn"
    assert len(MlflowClient(store).get_metric_history(down.info.run_id, "val/acc")) == 1


def test_an_unknown_logger_in_a_list_gets_one_line_naming_the_choices(hwbench_cli, tmp_path) -> None:
    result = hwbench_cli("logger=[tensorboard,wandb]")
    assert result.returncode == 1
    line = "error: logger=wandb: no such option; logger is one of csv, many, mlflow, tensorboard"
    assert result.stderr.strip() == line
    assert not (tmp_path / "outputs").exists()


@needs_mlflow
def test_a_store_another_job_holds_locked_is_waited_for_and_nothing_is_lost(tmp_path, caplog, monkeypatch) -> None:
    """SQLite's "database is locked" (mlflow #6490): a call that meets it tries again after a bounded wait."""
    import sqlite3
    import threading

    from mlflow import MlflowClient

    import hwbench.loggers.mlflow_run as mlflow_run
    from hwbench.loggers.mlflow_run import JobMLFlowLogger
    from hwbench.loggers.store import busy

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    logger = JobMLFlowLogger(save_dir=str(tmp_path / "job"), tracking_uri=uri)
    logger.log_metrics({"perf/train_samples_per_sec": 1.0}, step=1)
    tries = []
    monkeypatch.setattr(mlflow_run, "busy", lambda err: tries.append(str(err)) or busy(err))
    other_job = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other_job.execute("BEGIN EXCLUSIVE")  # held past MLflow's own 20 s wait for it: "database is locked"
    release = threading.Timer(MLFLOW_BUSY_S + 1, other_job.rollback)
    release.start()
    try:
        logger.log_metrics({"perf/train_samples_per_sec": 2.0}, step=2)
    finally:
        release.join()
        other_job.close()
    assert len(tries) == 1 and "database is locked" in tries[0]  # refused once, then tried again
    assert not logger.broken and not [r for r in caplog.records if r.levelname == "WARNING"]
    history = MlflowClient(uri).get_metric_history(logger.run_id, "perf/train_samples_per_sec")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 2.0)]
