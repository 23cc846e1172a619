"""``python -m hwbench`` as a user runs it: real Hydra sweeps in a subprocess, real event files read back."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import CLOCK_ONLY, scalars, spelled
from hwbench.job.runner import run as run_job
from hwbench.record.results import read_record

PER_EPOCH = {"train/loss", "train/acc", "val/loss", "val/acc", "perf/train_samples_per_sec", "perf/epoch_seconds"}
AT_END = {"run/test_loss", "run/test_acc", "run/train_samples_per_sec"}  # the run's own figures


def test_sweep_of_both_networks_logs_everything_to_one_tensorboard_root(hwbench_cli, tmp_path: Path) -> None:
    # batch 32 (Keras' default) gives 63 SGD steps on 2,000 images: enough to learn well beyond chance
    result = hwbench_cli(
        "-m", "arch=ffnn,cnn", "epochs=1", "data.train_limit=2000", "batch_size=32", "device=cpu", *CLOCK_ONLY
    )
    assert result.returncode == 0, result.stderr[-2000:]

    (sweep,) = (tmp_path / "outputs" / "multiruns").iterdir()
    runs = sorted({p.parent for p in sweep.rglob("events.out.tfevents*")})
    assert [r.name for r in runs] == ["0_ffnn_cpu_e1", "1_cnn_cpu_e1"]  # one log root, runs named by arch/device/epochs
    # the default logger is TensorBoard alone: no MLflow store, no CSV table (logger=mlflow, logger=csv)
    assert not list((tmp_path / "outputs").rglob("mlflow.db")) and not list(sweep.rglob("*.csv"))
    for run in runs:
        logged = scalars(run)
        assert logged.keys() >= PER_EPOCH | AT_END
        assert logged["run/test_acc"][-1] > 0.3  # chance is 0.1
        assert logged["perf/train_samples_per_sec"][-1] > 0
        record = read_record(run / "results.json")
        assert record.status == "ok" and record.metrics.test_acc == pytest.approx(logged["run/test_acc"][-1])

    summary = [line for line in result.stdout.splitlines() if "test acc" in line]
    assert len(summary) == 2 and summary[0].startswith("ffnn cpu epochs=1: test acc")
    assert "samples/s" in summary[0] and "wall" in summary[0]


@pytest.mark.parametrize(
    ("override", "sweep", "line"),
    [
        ("arch=rnn", "arch=ffnn,rnn", "error: arch=rnn: no such option; arch is one of cnn, ffnn, speedrun"),
        ("device=tpu", "device=cpu,tpu", "error: device=tpu: no such option; device is one of auto, cpu, gpu, mps"),
        ("epochs=abc", "epochs=1,abc", "error: epochs=abc: Value 'abc' of type 'str' could not be converted to "
                                       "Integer (python -m hwbench --cfg job shows every key and its value)"),
        ("epoch=3", "epoch=1,3", "error: epoch: no such key in the config; did you mean epochs? (python -m hwbench "
                                 "--cfg job shows every key and its value; +KEY=VALUE adds keys only under arch.net, "
                                 "optim.optimizer, optim.scheduler and execution (a constructor's arguments))"),
    ],
    ids=["option", "another option", "value", "key"],
)  # fmt: skip
def test_a_bad_option_key_or_value_gets_one_line(hwbench_cli, tmp_path: Path, override, sweep, line) -> None:
    result = hwbench_cli(override)
    line = line.replace("python -m hwbench", spelled("hwbench", tmp_path))  # as this shell runs it
    assert result.returncode == 1
    assert result.stderr.strip() == line  # the whole of it: one line, no Hydra report, no traceback
    swept = hwbench_cli("-m", sweep, "data.train_limit=100")
    assert swept.returncode == 1 and swept.stderr.strip() == line  # a sweep checks every job's before any starts
    assert not list(tmp_path.rglob("results.json"))  # no job ran


# A job's refusal ends python -m hwbench with "error: " and its record's summary, exit 1: end to end in
# test_config_refusals.py; here the job runs in this process (hwbench.job.runner.run) and its record gives the line.
@pytest.mark.parametrize(
    ("value", "line"),
    [("epochs=0", "ffnn cpu epochs=0: failed: epochs must be at least 1, got 0: set e.g. epochs=5"),
     ("lr=nan", "ffnn cpu epochs=5: failed: lr must be a positive, finite number, got nan: set e.g. lr=0.01")],
)  # fmt: skip
def test_bad_value_gets_one_line_naming_the_fix(make_cfg, tmp_path: Path, value: str, line: str) -> None:
    record = run_job(make_cfg(value), tmp_path)
    assert record.summary() == line and record.traceback is None
    on_disk = read_record(tmp_path / "results.json")
    assert on_disk.status == "failed" and on_disk.training is None  # refused before training


def test_a_value_the_optimizer_rejects_gets_one_line(make_cfg, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    try:  # the job sets this process's threads before Lightning builds the optimizer
        cfg = make_cfg("optim.optimizer.momentum=-1", "epochs=1", "data.train_limit=512", *CLOCK_ONLY)
        record = run_job(cfg, tmp_path)
    finally:
        torch.set_num_threads(threads)
    fix = f"fix the optim settings ({spelled('hwbench', Path.cwd())} --cfg job shows them)"
    assert record.summary() == f"ffnn cpu epochs=1: failed: Invalid momentum value: -1: {fix}"
    assert record.traceback is None and read_record(tmp_path / "results.json").status == "failed"


def test_help_and_cfg_job(hwbench_cli) -> None:
    help_ = hwbench_cli("--help")
    assert help_.returncode == 0
    groups = dict(line.split(": ", 1) for line in help_.stdout.splitlines() if line.count(": ") == 1)
    assert {"cnn", "ffnn"} <= set(groups["arch"].split(", "))
    assert {"cpu", "gpu", "mps", "auto"} <= set(groups["device"].split(", "))
    assert "experiment" in groups and "optim" in groups and "data" in groups
    cfg = hwbench_cli("--cfg", "job", "arch=cnn")
    assert cfg.returncode == 0 and "_target_: hwbench.model.paper.CNN" in cfg.stdout


def test_importing_hwbench_changes_no_process_state() -> None:
    """Side effects (log handlers, warning filters, Hydra resolvers) happen when an entry point asks, not on import."""
    code = """
import logging, warnings
import lightning, torch, hydra, matplotlib
from omegaconf import OmegaConf
def state():
    loggers = ("", "lightning", "lightning.pytorch", "lightning.pytorch.utilities.rank_zero")
    return ([(n, list(logging.getLogger(n).handlers), list(logging.getLogger(n).filters)) for n in loggers],
            list(warnings.filters), OmegaConf.has_resolver("hwbench_fresh_dir"))
before = state()
import hwbench.cli, hwbench.compare, hwbench.job.runner, hwbench.job.config
import hwbench.job.build, hwbench.measure.energy, hwbench.measure.gpu_busy, hwbench.measure.memory
assert state() == before, "importing hwbench changed the process"
from hwbench.job.console.quiet import extras
extras()
assert state() != before  # the setup the entry points call is what changes it
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
