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

from conftest import CLOCK_ONLY, cuda
from hwbench.compare.rows import to_row
from hwbench.job.runner import run
from hwbench.measure import peaks
from hwbench.measure.matmul_peak import (
    cache_file,
    keep,
    matmul_flops,
    matmul_peak,
    measure_matmul_peak,
    operands,
    probe_key,
    product,
)
from hwbench.measure.throughput import FlopsAndPeak
from hwbench.measure.training_clock import Mark
from hwbench.record.parts import Flops
from hwbench.record.results import read_record

CPU = torch.device("cpu")
THREADS = torch.get_num_threads()
PEAK_ONLY = (*CLOCK_ONLY, "+measure.peak={}")  # the clock and the measured peak: what these jobs are read for


def test_the_probe_counts_2_n_cubed_flops_a_product_and_divides_by_its_fastest_round() -> None:
    peak = measure_matmul_peak(CPU, "fp32")
    with FlopCounterMode(display=False) as counter:  # torch's own count of the probe's very product
        product(*operands(peak.size, "fp32", CPU))
    assert counter.get_total_flops() == matmul_flops(peak.size) == 2 * peak.size**3
    assert peak.flops_per_sec == pytest.approx(counter.get_total_flops() * peak.calls / peak.round_seconds)
    assert peak.size >= 1024 and peak.rounds == 5 and peak.calls >= 1 and not peak.cached
    assert peak.threads == torch.get_num_threads() and peak.precision == "fp32"
    assert peak.seconds >= peak.round_seconds * peak.rounds  # the probe's own time: growing, warming, timing


@pytest.mark.quiet
def test_the_cache_is_read_back_and_a_damaged_one_measured_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path))
    first = matmul_peak(CPU, "fp32")
    assert first.noise == []  # the machine is this test's alone: its threads got their cores
    (kept,) = tmp_path.glob("matmul-peak-*.json")
    again = matmul_peak(CPU, "fp32")
    assert not first.cached and first.seconds > 0
    same = {"cached", "seconds"}  # all but these: the kept figures, read back
    assert again.cached and again.seconds == 0 and again.model_dump(exclude=same) == first.model_dump(exclude=same)
    assert json.loads(kept.read_text())["key"]["threads"] == torch.get_num_threads()

    kept.write_text('{"key": ')  # a half-written file (a crash mid-write elsewhere): measured again, kept anew
    third = matmul_peak(CPU, "fp32")
    assert not third.cached and json.loads(kept.read_text())["value"]["round_seconds"] == third.round_seconds


def test_a_kept_peak_the_machine_cannot_reach_is_dropped_in_one_line_and_measured_again(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    """Before, a well-formed 1e39 FLOP/s in the cache was used as is: a 40-digit GFLOP/s, an MFU of 1e-30."""
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path))
    real, key = measure_matmul_peak(CPU, "fp32"), probe_key(CPU, "fp32")
    kept = cache_file(key)
    keep(kept, key, real)  # kept whether or not other load slowed it: what a quiet machine's probe leaves
    cached = json.loads(kept.read_text())
    for poison in ({"flops_per_sec": 1e39}, {"size": 10**6}, {"flops_per_sec": "1e11"}):
        kept.write_text(json.dumps(cached | {"value": cached["value"] | poison}))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            peak = matmul_peak(CPU, "fp32")
        assert not peak.cached and peak.flops_per_sec < 10 * real.flops_per_sec  # measured again, this machine's
        dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        if "flops_per_sec" in poison and isinstance(poison["flops_per_sec"], float):
            (line,) = dropped
            assert line.startswith("the kept matmul peak (1e+39 FLOP/s) is over 10x what one ") and line.endswith(
                "FLOP/s): it is not this machine's; dropped and measured again"
            )
        elif "size" in poison:
            assert dropped == ["the kept matmul peak is for 1000000x1000000 products, a size the probe never uses: "
                               "it is not this machine's; dropped and measured again"]  # fmt: skip
        if not peak.noise:  # a probe on a busy machine is not kept
            assert json.loads(kept.read_text())["value"]["flops_per_sec"] == peak.flops_per_sec  # kept anew


def test_a_cache_folder_that_cannot_be_made_costs_a_probe_not_the_job(tmp_path: Path, monkeypatch, caplog) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path / "a-file"))
    with caplog.at_level(logging.WARNING):
        peak = matmul_peak(CPU, "fp32")
    assert peak.flops_per_sec > 0 and not peak.cached
    assert "measuring without it" in caplog.text and "matmul-peak-" in caplog.text


def test_a_probe_beside_busy_loops_is_flagged_gives_no_mfu_and_is_never_kept(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path))
    threads = torch.get_num_threads()
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        peak = matmul_peak(CPU, "fp32")
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    (reason,) = peak.noise
    assert reason.startswith(f"the measurement's {threads} thread(s) got ")
    assert reason.endswith("other load took the rest")
    assert not list(tmp_path.glob("matmul-peak-*.json"))  # a busy machine's rate is never kept for the next job
    meter = FlopsAndPeak(Flops(forward=1_000, train=3_000), "32-true")
    meter.measured = peak  # what the job's probe gave: no MFU against it
    window = (Mark(0.0, 0, 0), Mark(1.0, 10, 1280))
    assert meter.rates(*window).mfu_of_measured_peak is None
    meter.measured = peak.model_copy(update={"noise": []})  # the same rate from a quiet probe would give one
    assert meter.rates(*window).mfu_of_measured_peak == pytest.approx(3_000 * 1280 / peak.flops_per_sec)


def test_a_kept_peak_the_training_beats_leaves_the_record_and_the_cache(hwbench_cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)  # the job's threads: part of the kept peak's key
    try:
        key = probe_key(CPU, "fp32")
    finally:
        torch.set_num_threads(THREADS)
    kept = cache_file(key)
    kept.parent.mkdir()
    slow = {
        "flops_per_sec": 1e9,
        "precision": "fp32",
        "size": 1024,
        "calls": 1,
        "round_seconds": 2.1,
        "rounds": 5,
        "threads": 1,
        "seconds": 11.0,
        "measured_at": "2026-01-01T00:00:00+00:00",
    }  # a busy day's 1 GFLOP/s
    kept.write_text(json.dumps({"key": key, "value": slow}))
    result = hwbench_cli(
        "device=cpu", "device.threads=1", "epochs=2", "data.train_limit=2000", *PEAK_ONLY, "hydra.run.dir=run"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    training = read_record(tmp_path / "run" / "results.json").training
    assert training.measured_peak is None and training.steady.mfu_of_measured_peak is None
    why = training.measured_peak_unavailable
    assert why.startswith("the training reached ") and why.endswith(
        "above the measured matmul peak (1.0 GFLOP/s, probed 2026-01-01T00:00:00+00:00): that peak is wrong"
    )
    assert not kept.exists()  # the next job probes again
    assert "is deleted; the next job measures again" in result.stdout + result.stderr


def submitit_installed() -> bool:
    try:
        return importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.quiet
@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])  # jobs in one process; in a process each
def test_a_sweep_pays_for_the_probe_once_and_every_cpu_record_has_mfu_against_it(
    hwbench_cli, tmp_path: Path, monkeypatch, launcher: str
) -> None:
    if launcher == "submitit_local" and not submitit_installed():
        pytest.skip("the cluster extra is not installed: pip install -e '.[cluster]'")
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path / "cache"))
    args = ["-m", f"hydra/launcher={launcher}", "seed=0,1", "device=cpu", "device.threads=1", "epochs=2"]
    result = hwbench_cli(*args, "data.train_limit=1000", *PEAK_ONLY)
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
    runs = shown.stdout.split("hwbench runs")[1]  # the setups' table first, then each run
    lines = [line for line in runs.splitlines() if "ffnn" in line and "%" in line]
    assert len(lines) == 2 and all("%\u2020" in line for line in lines)  # compare shows the measured MFU, marked
    assert "\u2020 MFU against the device's measured peak" in " ".join(shown.stdout.split())
    for row in csv.DictReader((tmp_path / "report" / "compare.csv").open()):
        assert float(row["mfu"]) == float(row["mfu_of_measured_peak"]) > 0


@cuda
@pytest.mark.quiet  # another test's process on the GPU would flag the probe
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
