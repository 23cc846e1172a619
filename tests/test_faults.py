"""Faults as a user meets them, each in a real ``python -m hwbench`` subprocess: the exit status, the one
line on the screen, and what the results record keeps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hwbench.compare import main as compare
from hwbench.results import read_record

TINY = ("device=cpu", "data.train_limit=1000")


def start(args: list[str], data_root: str, cwd: Path) -> subprocess.Popen:
    """hwbench in the background; stdout (Hydra's log lines) is read live, stderr (progress bars) goes to a file."""
    env = {**os.environ, "HWBENCH_DATA": data_root, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "hwbench", *args, f"output_root={cwd / 'outputs'}"]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=(cwd / "stderr.txt").open("w"),
                            text=True)  # fmt: skip


def wait_for(proc: subprocess.Popen, text: str) -> list[str]:
    lines = []
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"the run ended before printing {text!r}: {''.join(lines)[-2000:]}")


def records(root: Path) -> dict[str, object]:
    return {p.parent.name: read_record(p) for p in root.rglob("results.json")}


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGUSR1, 138)])
def test_a_stop_signal_after_the_first_epoch_keeps_the_finished_epochs(data_root, tmp_path, sig, code) -> None:
    proc = start(["epochs=100", *TINY], data_root, tmp_path)
    wait_for(proc, "epoch 1/100 done")  # the first epoch has ended
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    assert proc.returncode == code
    stderr = (tmp_path / "stderr.txt").read_text()
    assert stderr.strip().splitlines()[-1].startswith(f"error: interrupted by {sig.name}")
    assert "Traceback" not in stderr

    (record,) = records(tmp_path / "outputs").values()
    assert record.status == "interrupted" and record.reason.startswith(sig.name)
    finished = record.interruption.epochs_finished
    assert record.interruption.signal == sig.name and 1 <= finished < 100
    assert record.interruption.steps_finished >= finished * 8  # 1,000 images at batch 128: 8 steps an epoch
    assert len(record.epoch_table) == finished and record.partial
    assert record.overall.samples_per_sec > 0  # over the finished epochs
    assert record.metrics is None  # never tested: no accuracy passes for a finished run's


def test_ctrl_c_stops_a_sweep_and_every_finished_job_keeps_its_record(data_root, tmp_path) -> None:
    proc = start(["-m", "epochs=1,100,1", *TINY], data_root, tmp_path)
    wait_for(proc, "epoch 1/100 done")  # job 0 finished, job 1 is in its second epoch
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    found = records(tmp_path / "outputs")
    assert set(found) == {"0_ffnn_cpu_e1", "1_ffnn_cpu_e100"}  # job 2 never started
    assert found["0_ffnn_cpu_e1"].status == "ok" and found["1_ffnn_cpu_e100"].status == "interrupted"


def test_a_diverged_run_is_flagged_and_stopped(hwbench_cli, tmp_path) -> None:
    result = hwbench_cli("epochs=3", "lr=1000", *TINY)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: ffnn cpu epochs=3: diverged: the training loss is not finite in epoch 1: training stopped there; "
        "lower the learning rate (lr=1000.0)"
    )
    (record,) = records(tmp_path / "outputs").values()
    assert record.status == "diverged" and record.diverged_epoch == 1
    assert len(record.epoch_table) == 1  # stopped at the end of that epoch
    assert record.metrics is None and record.overall.samples_per_sec > 0  # what was measured stays


def test_a_sweep_records_a_diverged_job_goes_on_and_compare_never_ranks_it(hwbench_cli, tmp_path, capsys) -> None:
    result = hwbench_cli("-m", "lr=0.01,1000", "epochs=2", *TINY)
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1].startswith("error: 1 job(s) did not finish ok: ffnn_cpu_e2 (diverged)")
    )
    statuses = sorted(r.status for r in records(tmp_path / "outputs").values())
    assert statuses == ["diverged", "ok"]

    assert compare([str(tmp_path / "outputs"), "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    table, without = out.split("Runs without a result")
    assert len([line for line in table.splitlines() if line.startswith("│ ffnn")]) == 1  # one speed row: the ok run
    assert "diverged" in without and "diverged" not in table


def test_two_sweeps_into_one_folder_keep_all_their_records(data_root, tmp_path) -> None:
    sweep = tmp_path / "outputs" / "shared_sweep"
    args = ["-m", "seed=0,1", "epochs=1", *TINY, f"hydra.sweep.dir={sweep}"]
    procs = [start(args, data_root, tmp_path) for _ in range(2)]
    for proc in procs:
        proc.communicate(timeout=300)
        assert proc.returncode == 0
    found = records(sweep)
    assert sorted(found) == ["0_ffnn_cpu_e1", "0_ffnn_cpu_e1-2", "1_ffnn_cpu_e1", "1_ffnn_cpu_e1-2"]
    assert all(r.status == "ok" for r in found.values())
    for job in found:  # one TensorBoard run per job: nobody else's events in its folder
        events = list((sweep / job).glob("events.out.tfevents*"))
        assert events and len({e.name.split(".")[4] for e in events}) == 1  # one writing process


def test_a_folder_holding_another_run_is_refused(hwbench_cli, tmp_path) -> None:
    first = hwbench_cli("epochs=1", *TINY, f"hydra.run.dir={tmp_path / 'mine'}")
    assert first.returncode == 0
    before = (tmp_path / "mine" / "results.json").read_text()
    again = hwbench_cli("epochs=1", *TINY, f"hydra.run.dir={tmp_path / 'mine'}")
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines()[-1].startswith(f"error: ffnn_cpu_e1: {tmp_path / 'mine'} already holds")
    assert (tmp_path / "mine" / "results.json").read_text() == before  # the first run's record is untouched


def test_an_unwritable_output_root_gets_one_line(hwbench_cli, tmp_path) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    result = hwbench_cli("epochs=1", *TINY, f"output_root={tmp_path / 'a_file' / 'out'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write the output folder under output_root={tmp_path / 'a_file' / 'out'}")
    assert "set output_root to a folder you can write" in line


def test_a_value_of_the_wrong_type_gets_one_line(hwbench_cli) -> None:
    result = hwbench_cli("epochs=abc")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: epochs=abc: Value 'abc' of type 'str' could not be converted to Integer")
