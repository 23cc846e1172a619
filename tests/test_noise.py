"""A machine slowed halfway through a run's timed window: the run says so, and compare leaves it out of its setup."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CLOCK_ONLY
from hwbench.compare.cli import main as compare
from hwbench.record.results import read_record

# what marks a run noisy (the machine's load and the canary) beside the clock: nothing else measured
MEASURED = (*CLOCK_ONLY, "+measure.machine_load={}", "+measure.canary={}")
BUSY = "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end: pass"  # bounded, whatever happens


@pytest.mark.quiet  # the busy loops below are the only other load: the machine is this test's
def test_a_machine_slowed_halfway_marks_the_run_and_compare_leaves_it_out(data_root: str, tmp_path: Path) -> None:
    env = {**os.environ, "HWBENCH_DATA": data_root, "PYTHONUNBUFFERED": "1"}
    args = ["arch=ffnn", "device=cpu", "epochs=4", "data.train_limit=20000", *MEASURED, f"output_root={tmp_path}/out"]
    job = subprocess.Popen([sys.executable, "-m", "hwbench", *args], cwd=tmp_path, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    busy: list[subprocess.Popen] = []
    lines = []
    try:
        for line in job.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("epoch 2/4 done") and not busy:  # halfway through the steady epochs (2 to 4)
                busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2)]
        assert job.wait(timeout=600) == 0, "".join(lines[-20:])
    finally:
        for process in busy:
            process.kill()
            process.wait()
    assert busy, "".join(lines)
    (path,) = (tmp_path / "out").rglob("results.json")
    record = read_record(path)
    assert record.status == "ok" and (record.noise or record.unsteady), record.machine_load
    summary = next(line for line in lines if line.startswith("ffnn cpu epochs=4:"))
    assert "noisy: " in summary or "unsteady: " in summary

    assert compare([str(tmp_path / "out"), "--out", str(tmp_path / "report")]) == 0
    with (tmp_path / "report" / "setups.csv").open(newline="") as f:
        (setup,) = csv.DictReader(f)
    assert setup["runs"] == "0" and setup["left_out"] in ("1 noisy", "1 unsteady")
    assert setup["median_samples_per_sec"] == "" and setup["verdict"] == ""
