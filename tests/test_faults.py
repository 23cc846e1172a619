"""Faults as a user meets them, each in a real ``python -m hwbench`` subprocess: the exit status, the one
line on the screen, and what the results record keeps."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CLOCK_ONLY
from hwbench.compare import main as compare
from hwbench.errors import OutputUnwritable
from hwbench.record.results import ResultsRecord, read_record, write_record
from hwbench.record.writing import JobLogFile, quiet_tensorboard_thread

TINY = ("device=cpu", "data.train_limit=1000")
QUICK = (*TINY, *CLOCK_ONLY)  # where a test reads no measurement but the clock's


def start(args: list[str], data_root: str, cwd: Path, output_root: Path | None = None) -> subprocess.Popen:
    """hwbench in the background; stdout (Hydra's log lines) is read live, stderr (progress bars) goes to a file."""
    env = {**os.environ, "HWBENCH_DATA": data_root, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "hwbench", *args, f"output_root={output_root or cwd / 'outputs'}"]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=(cwd / "stderr.txt").open("w"),
                            text=True)  # fmt: skip


def wait_for(proc: subprocess.Popen, text: str) -> list[str]:
    lines = []
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"the run ended before printing {text!r}: {''.join(lines)[-2000:]}")


def taken(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Wait until the process has taken its first stop signal: it then ignores every stop signal (the kernel's
    SigIgn mask in /proc), or it has exited."""
    bits = sum(1 << (s - 1) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1))
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # gone meanwhile
            status = Path(f"/proc/{proc.pid}/status").read_text()
            if int(re.search(r"SigIgn:\s*([0-9a-f]+)", status)[1], 16) & bits == bits:  # type: ignore[index]
                return
        time.sleep(0.001)


def records(root: Path) -> dict[str, object]:
    return {p.parent.name: read_record(p) for p in root.rglob("results.json")}


def no_traceback(stderr: str) -> None:
    """Neither a traceback nor an exception the interpreter reports at exit ("Exception ignored in ...")."""
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-3000:]


def mount_tmpfs(folder: Path, options: str) -> Path:
    """A real filesystem of its own at ``folder``; skipped where this process cannot mount one (not root)."""
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return folder


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB filesystem that a test can fill up."""
    yield mount_tmpfs(tmp_path / "disk", "size=2m")
    subprocess.run(["umount", "-l", str(tmp_path / "disk")], check=False)


def fill(disk: Path) -> None:
    """Write to ``disk`` until it is full."""
    with (disk / "filler").open("wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(4096))
        except OSError as err:
            assert err.errno == errno.ENOSPC


def temporaries(root: Path) -> list[Path]:
    return list(root.rglob(".results-*"))


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGUSR1, 138)])
def test_a_stop_signal_after_the_first_epoch_keeps_the_finished_epochs(data_root, tmp_path, sig, code) -> None:
    """After the first signal, the others every 5 ms until the process has exited: through Lightning's teardown,
    the record's writing and the interpreter's exit, none of them may cut anything short."""
    proc = start(["epochs=100", *QUICK], data_root, tmp_path)
    wait_for(proc, "epoch 1/100 done")  # the first epoch has ended
    proc.send_signal(sig)
    taken(proc)  # sent sooner, a later signal may be handled first: Python runs pending handlers by number
    later = 0
    while proc.poll() is None:
        time.sleep(0.005)
        proc.send_signal((signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)[later % 3])
        later += 1
    proc.communicate(timeout=120)
    assert later > 0 and proc.returncode == code  # 128 + the first signal, not death by a later one
    stderr = (tmp_path / "stderr.txt").read_text()
    assert stderr.strip().splitlines()[-1].startswith(f"error: interrupted by {sig.name}")
    no_traceback(stderr)

    (record,) = records(tmp_path / "outputs").values()
    assert record.status == "interrupted" and record.reason.startswith(sig.name)
    finished = record.interruption.epochs_finished
    assert record.interruption.signal == sig.name and 1 <= finished < 100
    assert record.interruption.steps_finished >= finished * 8  # 1,000 images at batch 128: 8 steps an epoch
    assert len(record.training.epochs) == finished and record.training.partial
    assert record.training.overall.samples_per_sec > 0  # over the finished epochs
    assert record.metrics is None  # never tested: no accuracy passes for a finished run's
    assert temporaries(tmp_path / "outputs") == []


def test_a_signal_in_the_inference_timing_keeps_the_test_figures(data_root, tmp_path) -> None:
    proc = start(["epochs=2", "inference_batch_size=1", *TINY], data_root, tmp_path)  # 10,000 batches: seconds
    wait_for(proc, "timing inference")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    no_traceback((tmp_path / "stderr.txt").read_text())
    (record,) = records(tmp_path / "outputs").values()
    assert (
        record.status == "interrupted" and record.reason == "SIGINT after 2 epoch(s), in the inference timing (tested)"
    )
    assert len(record.training.epochs) == 2 and not record.training.partial  # training had finished
    assert 0 < record.metrics.test_acc <= 1 and record.metrics.test_loss > 0  # computed before the signal
    assert record.inference is None


def test_ctrl_c_stops_a_sweep_and_every_finished_job_keeps_its_record(data_root, tmp_path) -> None:
    proc = start(["-m", "epochs=1,100,1", *QUICK], data_root, tmp_path)
    wait_for(proc, "epoch 1/100 done")  # job 0 finished, job 1 is in its second epoch
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    found = records(tmp_path / "outputs")
    assert set(found) == {"0_ffnn_cpu_e1", "1_ffnn_cpu_e100"}  # job 2 never started
    assert found["0_ffnn_cpu_e1"].status == "ok" and found["1_ffnn_cpu_e100"].status == "interrupted"


def test_a_sweep_records_a_diverged_job_goes_on_and_compare_never_ranks_it(hwbench_cli, tmp_path, capsys) -> None:
    """A diverged job is flagged, stopped at the end of the epoch whose loss is not finite, and keeps what was
    measured; the sweep runs its other job, and compare shows the diverged one only among the runs without a result.
    """
    result = hwbench_cli("-m", "lr=0.01,1000", "epochs=2", *QUICK)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "error: 1 job(s) did not finish ok: 1_ffnn_cpu_e2 (diverged) (see their results.json)"
    assert (  # the job's own line, as in any sweep
        "ffnn cpu epochs=2: diverged: the training loss is not finite in epoch 1: training stopped there; "
        "lower the learning rate (lr=1000.0)"
    ) in lines
    found = records(tmp_path / "outputs")
    assert sorted(r.status for r in found.values()) == ["diverged", "ok"]
    record = found["1_ffnn_cpu_e2"]
    assert record.status == "diverged" and record.diverged_epoch == 1
    assert len(record.training.epochs) == 1  # stopped at the end of that epoch
    assert record.metrics is None and record.training.overall.samples_per_sec > 0  # what was measured stays

    assert compare([str(tmp_path / "outputs"), "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    table, without = out.split("Runs without a result")
    setups, runs = table.split("hwbench runs")
    assert len([line for line in setups.splitlines() if line.startswith("│ ffnn")]) == 1  # the ok run's setup
    assert len([line for line in runs.splitlines() if line.startswith("│ ffnn")]) == 1  # one speed row: the ok run
    assert "diverged" in without and "diverged" not in table


def test_two_sweeps_into_one_folder_keep_all_their_records(data_root, tmp_path) -> None:
    sweep = tmp_path / "outputs" / "shared_sweep"
    args = ["-m", "seed=0", "epochs=1", *QUICK, f"hydra.sweep.dir={sweep}"]  # one job each, the same name
    procs = [start(args, data_root, tmp_path) for _ in range(2)]
    for proc in procs:
        proc.communicate(timeout=300)
        assert proc.returncode == 0
    found = records(sweep)
    assert sorted(found) == ["0_ffnn_cpu_e1", "0_ffnn_cpu_e1-2"]
    assert all(r.status == "ok" for r in found.values())
    for job in found:  # one TensorBoard run per job: nobody else's events in its folder
        events = list((sweep / job).glob("events.out.tfevents*"))
        assert events and len({e.name.split(".")[4] for e in events}) == 1  # one writing process


def test_a_folder_holding_another_run_is_refused(hwbench_cli, tmp_path) -> None:
    first = hwbench_cli("epochs=1", *QUICK, f"hydra.run.dir={tmp_path / 'mine'}")
    assert first.returncode == 0
    mode = (tmp_path / "mine" / "results.json").stat().st_mode & 0o777
    assert mode == (tmp_path / "mine" / "hwbench.log").stat().st_mode & 0o777  # readable like every other output
    before = (tmp_path / "mine" / "results.json").read_text()
    again = hwbench_cli("epochs=1", *QUICK, f"hydra.run.dir={tmp_path / 'mine'}")
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


def test_a_record_that_cannot_be_written_leaves_the_last_one_and_no_temporary(small_disk) -> None:
    first = ResultsRecord(status="running", run_name="first")
    write_record(small_disk / "job", first)
    before = (small_disk / "job" / "results.json").read_text()
    fill(small_disk)
    with pytest.raises(OutputUnwritable, match=r"No space left on device\): free some space there"):
        write_record(small_disk / "job", ResultsRecord(status="failed", run_name="second", reason="x" * 10_000))
    assert (small_disk / "job" / "results.json").read_text() == before
    assert temporaries(small_disk) == []


def test_tensorboard_and_the_log_file_on_a_full_disk_stay_quiet_and_the_job_is_told(small_disk, capfd, monkeypatch):
    """TensorBoard's writer thread and the log file meet the full disk first: neither prints a traceback, and
    TensorBoard's error reaches the job (in the main thread) as OutputUnwritable naming the folder."""
    from hwbench.loggers.tensorboard import JobLogger  # Lightning loads only here

    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)  # Python's own, which prints; not pytest's
    quiet_tensorboard_thread()
    logger = JobLogger(save_dir=small_disk / "job", name="", version="")
    logger.log_metrics({"loss": 1.0}, step=0)
    log = logging.getLogger("hwbench.test_full_disk")
    log.addHandler(handler := JobLogFile(small_disk / "job" / "hwbench.log"))
    log.info("before the disk filled up")
    fill(small_disk)
    try:
        for step in range(1, 200):
            log.warning("x" * 1000)  # a line a minute for hours
            with contextlib.suppress(OutputUnwritable):  # the thread may not have met the disk yet
                logger.log_metrics({"loss": 1.0 / step, "padding": float(step)}, step=step)
        with pytest.raises(OutputUnwritable, match=f"cannot write {small_disk / 'job'} \\(No space left on device"):
            logger.finalize("success")
    finally:
        log.removeHandler(handler)
        with contextlib.suppress(OSError):
            handler.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Logging error" not in err and "Exception in thread" not in err, err[-3000:]


@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
def test_a_full_disk_at_the_start_gets_one_line(hwbench_cli, small_disk, sweep) -> None:
    fill(small_disk)
    result = hwbench_cli(*(["-m"] if sweep else []), "epochs=1", *TINY, f"output_root={small_disk / 'out'}")
    assert result.returncode == 1
    no_traceback(result.stderr)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write the output folder under output_root={small_disk / 'out'} "
                           f"(No space left on device: ")  # fmt: skip
    assert line.endswith("free some space there or set output_root to a folder you can write, "
                         "e.g. output_root=$HOME/hwbench-outputs")  # fmt: skip


def test_a_disk_that_fills_during_a_sweep_stops_it_in_one_line(data_root, tmp_path, small_disk) -> None:
    proc = start(["-m", "epochs=3,1", *QUICK], data_root, tmp_path, output_root=small_disk / "out")
    wait_for(proc, "epoch 1/3 done")
    fill(small_disk)  # job 0 still has two epochs, its test and its record to write
    proc.communicate(timeout=300)
    assert proc.returncode == 1
    stderr = (tmp_path / "stderr.txt").read_text()
    no_traceback(stderr)
    (sweep,) = (small_disk / "out" / "multiruns").iterdir()
    job = sweep / "0_ffnn_cpu_e3"
    assert stderr.strip().splitlines()[-1] == (
        f"error: cannot write {job} (No space left on device): free some space there or set output_root to "
        f"another disk; the sweep stops here: no further job starts"
    )
    assert read_record(job / "results.json").status == "running"  # the last record written stays
    assert temporaries(small_disk) == []
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0_ffnn_cpu_e3"]  # job 1 never started


def test_a_read_only_output_root_is_named_as_such(hwbench_cli, tmp_path) -> None:
    read_only = mount_tmpfs(tmp_path / "ro", "ro,size=1m")
    try:
        result = hwbench_cli("epochs=1", *TINY, f"output_root={read_only / 'out'}")
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=False)
    assert result.returncode == 1
    no_traceback(result.stderr)
    (line,) = result.stderr.strip().splitlines()
    assert f"(Read-only file system: {read_only / 'out'})" in line  # not the ENOENT mkdir met first
