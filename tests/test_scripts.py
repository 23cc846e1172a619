"""The scripts run end to end at tiny size (their real runs are benchmarks, never timed in a test)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from matplotlib.image import imread

from conftest import CLOCK_ONLY, REPO, cuda

QUICK = ["device=cpu", "data.train_limit=2000", *CLOCK_ONLY]  # the clock and the accuracy: what they read


def script(name: str, *args: str, data_root: str, cwd: Path, folder: str = "scripts") -> subprocess.CompletedProcess:
    env = {**os.environ, "HWBENCH_DATA": data_root}
    cmd = [sys.executable, str(REPO / folder / name), *args]
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def json_line(stdout: str, key: str) -> dict:
    (line,) = [line for line in stdout.splitlines() if line.startswith(f'{{"{key}"')]
    return json.loads(line)[key]


def test_speedrun_runs_on_cpu_at_tiny_size(data_root: str, tmp_path: Path) -> None:
    args = ["--seeds", "0", "device=cpu", "data.train_limit=5000", *CLOCK_ONLY]
    result = script("speedrun.py", *args, data_root=data_root, cwd=tmp_path)
    summary = json_line(result.stdout, "speedrun")
    (run,) = summary["runs"]
    assert run["test_acc"] > 0.2 and run["train_seconds"] > 0  # 20 steps from scratch: learning, chance is 0.1
    assert summary["reached"] == (run["test_acc"] >= 0.99)
    assert f"{summary['reached']}/1 seeds reached 99%; median training time" in result.stdout


def test_reproduce_table1_writes_markdown_and_png(data_root: str, tmp_path: Path) -> None:
    args = [*QUICK, "--arch", "ffnn", "--epochs", "1", "--seeds", "0", "1"]
    script("reproduce_table1.py", *args, "--out", str(tmp_path / "t1"), data_root=data_root, cwd=tmp_path)
    table = (tmp_path / "t1" / "table1.md").read_text()
    assert table.startswith("| arch | epochs | paper | ours: median (min-max)")
    assert "| ffnn | 1 | - |" in table and "2 seeds" in table
    (row,) = json.loads((tmp_path / "t1" / "table1.json").read_text())
    assert row["seeds"] == [0, 1] and min(row["accs"]) <= row["ours_median"] <= max(row["accs"])
    assert imread(tmp_path / "t1" / "table1.png").ndim == 3

    # a second run adds its row and keeps the first: rows can be measured one at a time; it says its plan and an
    # estimate before it trains, and SIGTERM (a real one, in its second run) stops it in one line, the rows kept
    args = [*QUICK, "--arch", "ffnn", "--epochs", "2", "50", "--seeds", "0"]
    env = {**os.environ, "HWBENCH_DATA": data_root}
    cmd = [sys.executable, str(REPO / "scripts" / "reproduce_table1.py"), *args, "--out", str(tmp_path / "t1")]
    child = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows: list[dict] = []
    while child.poll() is None and len(rows) < 2:  # until the epochs=2 row is written beside the first
        time.sleep(0.1)
        with contextlib.suppress(OSError, ValueError):  # not there yet, or being written
            rows = json.loads((tmp_path / "t1" / "table1.json").read_text())
    child.send_signal(signal.SIGTERM)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    plan, estimate, *_ = stdout.splitlines()
    assert plan == f"plan: 2 runs (ffnn x 2, 50 epochs x seeds 0), experiment=paper {' '.join(QUICK)}"
    assert estimate.startswith("estimate: about ") and "on a 2-core AMD EPYC" in estimate
    assert stderr.strip().splitlines()[-1] == (
        f"error: stopped (interrupted by SIGTERM): the rows finished so far are in {tmp_path / 't1' / 'table1.md'}"
    )
    assert "Traceback" not in stderr
    rows = json.loads((tmp_path / "t1" / "table1.json").read_text())
    assert [(r["epochs"], r["seeds"]) for r in rows] == [(1, [0, 1]), (2, [0])]
    assert "| ffnn | 2 | - |" in (tmp_path / "t1" / "table1.md").read_text()


@cuda
def test_speedrun_captures_fused_steps_and_trains_on_the_gpu(data_root: str, tmp_path: Path) -> None:
    import torch

    args = ["--seeds", "0", "device=gpu", "device.precision=bf16-mixed", "execution=fused", "data.train_limit=6000"]
    summary = json_line(script("speedrun.py", *args, data_root=data_root, cwd=tmp_path).stdout, "speedrun")
    (run,) = summary["runs"]
    assert summary["device"] == torch.cuda.get_device_name()
    assert run["execution"] == "fused" and run["prepare_seconds"] > 0  # compiled and captured before the clock
    assert run["test_acc"] > 0.5  # 48 steps of the real recipe, schedule and all


@cuda
def test_bench_overhead_on_the_gpu(data_root: str, tmp_path: Path) -> None:
    args = ["data.train_limit=2000", "--device", "gpu", "--arch", "cnn", "--repeats", "1", "--epochs", "2"]
    (row,) = json_line(
        script("bench_overhead.py", *args, data_root=data_root, cwd=tmp_path, folder="benchmarks").stdout,
        "bench_overhead",
    )
    assert row["device"] == "gpu" and row["ratio"] == row["hwbench_all"][0] / row["hand_loop_all"][0]


@cuda
def test_bench_overhead_compares_graphed_paths_on_the_gpu(data_root: str, tmp_path: Path) -> None:
    args = ["execution=graph", "data.train_limit=5120", "--device", "gpu", "--arch", "ffnn", "--repeats", "1"]
    result = script("bench_overhead.py", *args, "--epochs", "3", data_root=data_root, cwd=tmp_path, folder="benchmarks")
    (row,) = json_line(result.stdout, "bench_overhead")
    assert row["hwbench_samples_per_sec"] > 0 and row["hand_loop_samples_per_sec"] > 0
