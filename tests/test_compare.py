"""``hwbench compare`` on a real sweep: two short CPU runs that differ only in their thread count."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from hwbench.compare import main as compare
from hwbench.results import ResultsRecord, read_record, write_record

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JOBS = ("0_ffnn_cpu_e2", "1_ffnn_cpu_e2")  # the sweep's job folders: device.threads=1, device.threads=2


@pytest.fixture(scope="module")
def outputs(data_root: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real sweep for the whole module (as conftest's hwbench_cli runs it): ~10 s of training."""
    root = tmp_path_factory.mktemp("bench")
    args = ["-m", "device=cpu", "device.threads=1,2", "epochs=2", "data.train_limit=3000", "arch=ffnn"]
    env = {**os.environ, "HWBENCH_DATA": data_root, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "hwbench", *args, f"output_root={root / 'outputs'}"]
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "outputs"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def table_line(stdout: str, job: str) -> str:
    """The console table's row of one job (not the caption, which names the baseline's job too)."""
    (line,) = [line for line in stdout.splitlines() if job in line and line.startswith("│")]
    return line


def test_table_csv_markdown_and_plots_of_a_thread_sweep(outputs: Path, tmp_path: Path, capsys) -> None:
    report = tmp_path / "report"
    assert compare([str(outputs), "--out", str(report)]) == 0
    stdout = capsys.readouterr().out

    assert "speed-up" in stdout
    for job in JOBS:  # one row per job, each with its speed-up against the slowest
        assert re.search(r"\d+\.\d\dx", table_line(stdout, job)), table_line(stdout, job)
    assert "1.00x" in stdout
    assert str(report) in stdout  # says where the report went

    rows = read_csv(report / "compare.csv")
    assert len(rows) == 2
    expected = {"arch", "device", "host", "model", "threads", "precision", "batch_size", "epochs", "test_acc",
                "train_samples_per_sec", "train_basis", "epoch_seconds", "seconds_to_97", "mfu",
                "inference_samples_per_sec", "latency_ms_p50", "speedup", "status", "reason", "run_name"}  # fmt: skip
    assert expected <= rows[0].keys()
    assert sorted(r["threads"] for r in rows) == ["1", "2"]  # the hardware setup that tells the rows apart
    for row in rows:
        assert row["status"] == "ok" and row["arch"] == "ffnn" and row["train_basis"] == "steady"
        assert float(row["train_samples_per_sec"]) > 0 and float(row["inference_samples_per_sec"]) > 0
        assert 0.1 < float(row["test_acc"]) <= 1 and float(row["epoch_seconds"]) > 0
    assert min(float(r["speedup"]) for r in rows) == 1.0  # the default baseline: the slowest run

    markdown = (report / "compare.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert table[0].startswith("| arch |") and "speed-up" in table[0] and set(table[1]) <= set("|-: ")
    assert len(table) == 4 and all(job in markdown for job in JOBS)

    for name in ("throughput.png", "accuracy_vs_time.png"):
        png = report / name
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        height, width, _ = matplotlib.image.imread(png).shape
        assert height > 200 and width > 400


def test_skipped_run_is_listed_and_a_broken_record_is_named(outputs: Path, tmp_path: Path, capsys) -> None:
    # results copied from another machine: a GPU job that found no GPU, and a record cut short in the copy
    other = tmp_path / "gpu_box"
    skipped = {
        "status": "skipped", "reason": "skipped: no CUDA device", "run_name": "ffnn_gpu_e2", "arch": "ffnn",
        "device": "gpu", "epochs": 2, "started": "2026-01-01T00:00:00+00:00", "config": {"batch_size": 128},
    }  # fmt: skip
    write_record(other / "multiruns" / "x" / "0_ffnn_gpu_e2", ResultsRecord.model_validate(skipped))
    broken = other / "multiruns" / "x" / "1_cnn_gpu_e2" / "results.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"status": "ok", "arch": "cn')

    assert compare([str(outputs), str(other), "--out", str(tmp_path / "report")]) == 0
    captured = capsys.readouterr()
    assert "Runs without a result" in captured.out
    line = table_line(captured.out, "0_ffnn_gpu_e2")
    assert "skipped" in line and "no CUDA device" in line
    (warning,) = captured.err.strip().splitlines()
    assert warning.startswith("warning:") and str(broken) in warning

    rows = {r["job"]: r for r in read_csv(tmp_path / "report" / "compare.csv")}
    assert rows.keys() == {*JOBS, "0_ffnn_gpu_e2"}
    assert rows["0_ffnn_gpu_e2"]["status"] == "skipped" and rows["0_ffnn_gpu_e2"]["reason"] == skipped["reason"]
    assert rows["0_ffnn_gpu_e2"]["train_samples_per_sec"] == "" and rows["0_ffnn_gpu_e2"]["speedup"] == ""


def test_baseline_names_the_row_that_gets_1x(outputs: Path, tmp_path: Path, capsys) -> None:
    records = {job: read_record(next(outputs.rglob(f"{job}/results.json"))) for job in JOBS}
    speed = {job: record.training.steady.samples_per_sec for job, record in records.items()}
    fast, slow = sorted(JOBS, key=speed.get, reverse=True)  # not the default baseline, which is the slowest

    assert compare([str(outputs), "--baseline", f"/{fast}/", "--out", str(tmp_path / "report")]) == 0
    stdout = capsys.readouterr().out
    assert "1.00x" in table_line(stdout, fast)
    rows = {r["job"]: r for r in read_csv(tmp_path / "report" / "compare.csv")}
    assert float(rows[fast]["speedup"]) == 1.0
    assert float(rows[slow]["speedup"]) == pytest.approx(speed[slow] / speed[fast])

    # both jobs are vm/cpu/ffnn_cpu_e2: a spec that fits both is refused, not resolved by chance
    assert compare([str(outputs), "--baseline", "ffnn_cpu_e2", "--out", str(tmp_path / "r2")]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("error: --baseline 'ffnn_cpu_e2' matches 2 ffnn runs")


def test_user_mistakes_get_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    # through the real entry point, as a user types it
    result = subprocess.run([sys.executable, "-m", "hwbench.compare", str(empty)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: no results.json under {empty}: run python -m hwbench first"
    assert not (tmp_path / "outputs").exists()  # no empty report folder left behind

    assert compare([str(tmp_path / "nowhere")]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error == f"error: no such folder: {tmp_path / 'nowhere'}"

    failed = ResultsRecord(status="failed", reason="out of memory", arch="cnn")
    write_record(tmp_path / "records" / "job", failed)
    (tmp_path / "taken").write_text("a file, not a folder")
    assert compare([str(tmp_path / "records"), "--out", str(tmp_path / "taken")]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith(f"error: cannot write the report to {tmp_path / 'taken'}")
