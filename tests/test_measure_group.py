"""The measure config group: what a job measures besides its clock is chosen in config; what it did not measure its
record, its summary line and compare say, never as a zero. A real run in a subprocess, its record read back;
refusals in this process."""

from __future__ import annotations

import csv
from pathlib import Path

from conftest import CLOCK_ONLY
from hwbench.compare import main as compare
from hwbench.job.runner import run
from hwbench.record.results import read_record

TINY = ("device=cpu", "epochs=1", "data.train_limit=512")
TORCH_KERNELS = CLOCK_ONLY[1:]  # torch's own CPU kernels: no kernel timing before training (untested here)


def test_switched_off_measurements_are_named_not_measured_in_the_record_the_summary_and_compare(
    hwbench_cli, tmp_path: Path, capsys
) -> None:
    result = hwbench_cli("~measure.inference", "~measure.energy", *TINY, *TORCH_KERNELS)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = (tmp_path / "outputs").rglob("results.json")
    record = read_record(path)
    assert record.status == "ok" and record.not_measured == ["inference", "energy"]
    assert record.inference is None  # never a zero
    assert record.resources.energy_seconds is None and record.resources.cpu_energy_unavailable is None
    assert record.resources.peak_host_rss_mb > 0  # what was not switched off is measured
    assert record.machine_load is not None and record.machine_load.canary_before_gflops > 0
    assert "not measured: inference, energy" in result.stdout + result.stderr  # the summary line

    compare([str(tmp_path / "outputs"), "--out", str(tmp_path / "report"), "--columns", "all"])
    out = capsys.readouterr().out
    assert "not measured in some runs (~measure.NAME): energy, inference" in " ".join(out.split())
    (row,) = csv.DictReader((tmp_path / "report" / "compare.csv").open())
    assert row["not_measured"] == "inference, energy" and row["inference_samples_per_sec"] == ""


def test_an_unknown_measurement_and_a_quiet_machine_without_its_check_get_one_line(make_cfg, tmp_path: Path) -> None:
    """The jobs in this process: a record's summary is python -m hwbench's last line after "error: ", exit 1 (end
    to end in test_config_refusals.py)."""
    unknown = run(make_cfg("+measure.flops={}", *TINY), tmp_path / "unknown")
    assert unknown.status == "failed" and unknown.traceback is None
    assert unknown.summary().endswith(
        "measure.flops: no such measurement; measure has inference, peak, canary, machine_load, memory, energy, "
        "gpu_busy"
    )
    quiet = run(make_cfg("~measure.machine_load", "device.require_quiet=true", *TINY), tmp_path / "quiet")
    assert (
        quiet.status == "failed"
        and quiet.traceback is None
        and quiet.summary().endswith("device.require_quiet=true needs measure.machine_load: drop ~measure.machine_load")
    )
