"""The measured matmul peak: MFU's denominator on every device (hwbench/measure/matmul_peak.py). Its figures are
never asserted against a speed: only its arithmetic, its cache, and that the records and compare carry it."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import cuda
from hwbench.compare.rows import to_row
from hwbench.job.runner import run
from hwbench.measure import peaks
from hwbench.measure.matmul_peak import matmul_flops, matmul_peak, measure_matmul_peak, operands, product
from hwbench.record.results import read_record

CPU = torch.device("cpu")


def test_the_probe_counts_2_n_cubed_flops_a_product_and_divides_by_its_fastest_round() -> None:
    peak = measure_matmul_peak(CPU, "fp32")
    with FlopCounterMode(display=False) as counter:  # torch's own count of the probe's very product
        product(*operands(peak.size, "fp32", CPU))
    assert counter.get_total_flops() == matmul_flops(peak.size) == 2 * peak.size**3
    assert peak.flops_per_sec == pytest.approx(counter.get_total_flops() * peak.calls / peak.round_seconds)
    assert peak.size >= 1024 and peak.rounds == 5 and peak.calls >= 1 and not peak.cached
    assert peak.threads == torch.get_num_threads() and peak.precision == "fp32"
    assert peak.seconds >= peak.round_seconds * peak.rounds  # the probe's own time: growing, warming, timing


def test_the_cache_is_read_back_and_a_damaged_one_measured_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path))
    first = matmul_peak(CPU, "fp32")
    (kept,) = tmp_path.glob("matmul-peak-*.json")
    again = matmul_peak(CPU, "fp32")
    assert not first.cached and first.seconds > 0
    same = {"cached", "seconds"}  # all but these: the kept figures, read back
    assert again.cached and again.seconds == 0 and again.model_dump(exclude=same) == first.model_dump(exclude=same)
    assert json.loads(kept.read_text())["key"]["threads"] == torch.get_num_threads()

    kept.write_text('{"key": ')  # a half-written file (a crash mid-write elsewhere): measured again, kept anew
    third = matmul_peak(CPU, "fp32")
    assert not third.cached and json.loads(kept.read_text())["peak"]["round_seconds"] == third.round_seconds


def test_a_cache_folder_that_cannot_be_made_costs_a_probe_not_the_job(tmp_path: Path, monkeypatch, caplog) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path / "a-file"))
    with caplog.at_level(logging.WARNING):
        peak = matmul_peak(CPU, "fp32")
    assert peak.flops_per_sec > 0 and not peak.cached
    assert "probing without it" in caplog.text


def submitit_installed() -> bool:
    try:
        return importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])  # jobs in one process; in a process each
def test_a_sweep_pays_for_the_probe_once_and_every_cpu_record_has_mfu_against_it(
    hwbench_cli, tmp_path: Path, monkeypatch, launcher: str
) -> None:
    if launcher == "submitit_local" and not submitit_installed():
        pytest.skip("the cluster extra is not installed: pip install -e '.[cluster]'")
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path / "cache"))
    args = ["-m", f"hydra/launcher={launcher}", "seed=0,1", "device=cpu", "device.threads=1", "epochs=2"]
    result = hwbench_cli(*args, "data.train_limit=1000")
    assert result.returncode == 0, result.stderr[-3000:]
    records = [read_record(p) for p in sorted((tmp_path / "outputs").rglob("results.json"))]
    measured = [r.training.measured_peak for r in records]
    assert sorted(m.cached for m in measured) == [False, True]  # one job probed; the other read its file
    assert len({(m.flops_per_sec, m.measured_at) for m in measured}) == 1
    assert len(list((tmp_path / "cache").glob("matmul-peak-*.json"))) == 1
    for record in records:
        training = record.training
        assert training.peak is None and "CPUs" in training.mfu_unavailable  # no datasheet peak for a CPU
        assert training.measured_peak.threads == 1 and training.measured_peak.precision == "fp32"
        assert training.measured_peak_unavailable is None
        for rates in (training.overall, training.steady):
            assert rates.mfu is None
            assert rates.mfu_of_measured_peak == pytest.approx(rates.flops_per_sec / measured[0].flops_per_sec)

    env = {**os.environ, "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "hwbench.compare", str(tmp_path / "outputs"), "--out", str(tmp_path / "report"),
           "--columns", "arch,job,mfu,mfu_of_measured_peak"]  # fmt: skip
    shown = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if "ffnn" in line and "%" in line]
    assert len(lines) == 2 and all("%\u2020" in line for line in lines)  # compare shows the measured MFU, marked
    assert "\u2020 MFU against the device's measured peak" in " ".join(shown.stdout.split())
    for row in csv.DictReader((tmp_path / "report" / "compare.csv").open()):
        assert float(row["mfu"]) == float(row["mfu_of_measured_peak"]) > 0


@cuda
@pytest.mark.parametrize("in_table", [True, False], ids=["gpu in the table", "gpu not in the table"])
def test_a_gpu_run_has_the_measured_mfu_and_the_datasheet_one_where_known(
    make_cfg, tmp_path: Path, monkeypatch, in_table: bool
) -> None:
    if not in_table:  # the datasheet table without this GPU: what a GPU hwbench does not know meets
        monkeypatch.setattr(peaks, "GPU_PEAKS", ())
    record = run(make_cfg("device=gpu", "epochs=2", "data.train_limit=20000"), tmp_path)
    assert record.status == "ok"
    training, steady = record.training, record.training.steady
    measured = training.measured_peak
    assert measured.precision == "fp32" and measured.size >= 1024 and measured.flops_per_sec > 0
    assert steady.mfu_of_measured_peak == pytest.approx(steady.flops_per_sec / measured.flops_per_sec)
    row = to_row(str(tmp_path / "results.json"), record)
    if in_table and peaks.gpu_peaks(torch.cuda.get_device_name()) is not None:
        assert training.peak.flops_per_sec > measured.flops_per_sec  # the datasheet's peak is the silicon's limit
        assert 0 < steady.mfu < steady.mfu_of_measured_peak and row.mfu == steady.mfu and not row.mfu_measured
    elif not in_table:
        assert training.peak is None and "no dense peak known" in training.mfu_unavailable
        assert steady.mfu is None and row.mfu == steady.mfu_of_measured_peak and row.mfu_measured
