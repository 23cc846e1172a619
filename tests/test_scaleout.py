"""Scale-out on the CPU: DDP with 2 gloo processes, a device.devices sweep, a submitit_local sweep, compare's
scaling columns. Every DDP run is a real ``python -m hwbench`` subprocess: the job starts ranks >= 1 as
``python -m hwbench`` jobs of its own, so DDP must never start inside the pytest process."""

from __future__ import annotations

import csv
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from conftest import CLOCK_ONLY, cuda
from hwbench.compare.cli import main as compare
from hwbench.data.datamodules import TensorBatches
from hwbench.record.results import ResultsRecord, read_record

# one thread a rank (2 cores); the clock, the epochs and the accuracy measured: what these tests read
TINY = ("device=cpu", "arch=ffnn", "data.val_size=0", "device.threads=1", *CLOCK_ONLY)
pytestmark = pytest.mark.xdist_group("ddp")  # one pytest worker runs these: two DDP jobs at once would share 2 cores


def records(root: Path) -> dict[str, ResultsRecord]:
    return {p.parent.name: read_record(p) for p in root.rglob("results.json")}


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_take_disjoint_slices_of_each_epochs_permutation(world_size: int) -> None:
    n, b = 100, 4
    x, y = torch.arange(n).float(), torch.arange(n)
    single = TensorBatches(x, y, b * world_size, shuffle=True, seed=7)
    ranks = [TensorBatches(x, y, b, shuffle=True, seed=7, rank=r, world_size=world_size) for r in range(world_size)]
    for _ in range(2):  # two epochs: the same permutation on every rank, reshuffled between epochs
        shards = [list(r) for r in ranks]
        full = [yb for _, yb in single][: len(shards[0])]  # DDP drops the incomplete last global batch
        assert all(len(s) == len(shards[0]) == n // (b * world_size) for s in shards)
        seen = [torch.cat([yb for _, yb in s]).tolist() for s in shards]
        assert sum(map(len, seen)) == len(set().union(*map(set, seen)))  # disjoint
        for k, batch in enumerate(full):  # the ranks' k-th batches are one process's k-th batch at b x W
            assert torch.equal(torch.cat([s[k][1] for s in shards]), batch)
    evals = [TensorBatches(x, y, 8, rank=r, world_size=world_size) for r in range(world_size)]
    assert sorted(torch.cat([yb for e in evals for _, yb in e]).tolist()) == list(range(n))  # whole split
    assert [len(e) for e in evals] == [len(list(e)) for e in evals]


def test_ddp_step_on_2_x_b_matches_one_process_on_2b(hwbench_cli, tmp_path) -> None:
    """SGD on the mean loss: the all-reduced mean of two ranks' gradients over b images each is the gradient
    over the same 2b images, so the weights, and the test loss over the whole test split, agree. Both step modes
    (a step a batch, and 4 steps an execution): one sweep of two 2-rank jobs, one of two 1-process jobs."""
    # TINY's torch kernels: one matmul kernel in both jobs, so their rounding agrees; 8 steps an epoch at 2 x 32
    limit = 512
    common = ["steps_per_execution=1,4", *TINY, "epochs=2", "lr=0.1", f"data.train_limit={limit}"]
    ok(hwbench_cli("-m", "device.devices=2", "batch_size=32", *common, f"hydra.sweep.dir={tmp_path / 'ddp'}"))
    ok(hwbench_cli("-m", "device.devices=1", "batch_size=64", *common, f"hydra.sweep.dir={tmp_path / 'one'}"))
    ddps, ones = by_steps_per_execution(tmp_path / "ddp"), by_steps_per_execution(tmp_path / "one")
    assert sorted(ddps) == sorted(ones) == [1, 4]

    for group in (1, 4):
        (folder, ddp), (_, one) = ddps[group], ones[group]
        assert (ddp.world_size, ddp.strategy, ddp.backend) == (2, "DDPStrategy", "gloo")
        assert (ddp.per_device_batch_size, ddp.global_batch_size) == (32, 64)
        assert (one.world_size, one.global_batch_size) == (1, 64)
        assert [e.samples for e in ddp.training.epochs] == [limit, limit] == [e.samples for e in one.training.epochs]
        assert ddp.config["device"]["devices"] == 2 and ddp.training.overall.samples_per_sec > 0
        # the same updates: the same test loss and accuracy over all 10,000 test images (not rank 0's half)
        assert ddp.metrics.test_loss == pytest.approx(one.metrics.test_loss, rel=1e-5), group
        assert ddp.metrics.test_acc == pytest.approx(one.metrics.test_acc, abs=2e-4), group  # at most 2 argmax ties
        assert ddp.training.overall.batches_per_sec > 0 and ddp.training.epochs[0].train_loss == pytest.approx(
            one.training.epochs[0].train_loss, rel=1e-5
        ), group  # the epoch's training loss: over both ranks' images
        assert (folder / "ddp_rank1.log").exists()  # rank 1 lived in the job's folder and wrote only its log
        assert len(list(folder.glob("results*"))) == 1


def by_steps_per_execution(sweep: Path) -> dict[int, tuple[Path, ResultsRecord]]:
    """A sweep's jobs, each by its steps_per_execution: (its folder, its record)."""
    found = [(p.parent, read_record(p)) for p in sweep.rglob("results.json")]
    return {record.config["steps_per_execution"]: (folder, record) for folder, record in found}


def test_devices_sweep_runs_both_jobs_and_compare_shows_the_efficiency(hwbench_cli, tmp_path, capsys) -> None:
    """A DDP job, then a 1-device job, in one sweep: each as it would run alone (the 1-device job sees none of the
    DDP job's ranks), and compare's scaling columns and plot over the two."""
    args = ("-m", "device.devices=2,1", "epochs=2", "data.train_limit=1024", "logger=[tensorboard,csv]")
    result = ok(hwbench_cli(*args, *TINY))
    assert result.stdout.count("Launching 2 jobs locally") == 1  # no child re-launched the sweep
    (sweep,) = (tmp_path / "outputs" / "multiruns").iterdir()  # one sweep folder, no stray runs/ folder
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["multiruns"]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0_ffnn_cpu_e2", "1_ffnn_cpu_e2"]
    jobs = records(sweep)
    two, one = jobs["0_ffnn_cpu_e2"], jobs["1_ffnn_cpu_e2"]
    assert (two.world_size, two.strategy, two.status) == (2, "DDPStrategy", "ok")
    assert (one.world_size, one.strategy, one.status) == (1, "SingleDeviceStrategy", "ok")
    assert (sweep / "0_ffnn_cpu_e2" / "ddp_rank1.log").exists() and not (
        sweep / "1_ffnn_cpu_e2" / "ddp_rank1.log"
    ).exists()
    # only global rank 0 logs: the DDP job's table has one row of the run's figures, the record's
    ends = [row for row in csv.DictReader((sweep / "0_ffnn_cpu_e2" / "csv" / "metrics.csv").open())
            if row["run/test_acc"]]  # fmt: skip
    assert [float(row["run/test_acc"]) for row in ends] == pytest.approx([two.metrics.test_acc])

    assert compare([str(sweep), "--out", str(tmp_path / "report")]) == 0
    stdout = capsys.readouterr().out
    assert "scaling eff." in stdout and "scale-up" in stdout
    rows = {r["job"]: r for r in csv.DictReader((tmp_path / "report" / "compare.csv").open())}
    assert float(rows["1_ffnn_cpu_e2"]["scaling_efficiency"]) == 1.0
    two_row = rows["0_ffnn_cpu_e2"]
    speeds = [float(rows[j]["train_samples_per_sec"]) for j in ("1_ffnn_cpu_e2", "0_ffnn_cpu_e2")]
    assert float(two_row["scaling_speedup"]) == pytest.approx(speeds[1] / speeds[0])
    # the ideal counts the cores the ranks' threads use, not the ranks: two ranks of one thread on the 2 cores a
    # 2-thread process had are no more of the machine (1x), on 4 cores they are twice one 1-thread process
    cores = len(os.sched_getaffinity(0))
    used = [
        min(int(rows[j]["world_size"]) * int(rows[j]["threads"]), cores) for j in ("1_ffnn_cpu_e2", "0_ffnn_cpu_e2")
    ]
    assert float(two_row["scaling_efficiency"]) == pytest.approx(speeds[1] / speeds[0] / (used[1] / used[0]))
    assert two_row["world_size"] == "2" and two_row["global_batch_size"] == "256"
    assert (tmp_path / "report" / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert "scaling.png" in (tmp_path / "report" / "compare.md").read_text()


def test_a_rank_that_dies_is_named_and_the_finished_epochs_are_kept(data_root, tmp_path) -> None:
    """SIGKILL of rank 1 in the second epoch. Before, the job ended in gloo's 'Connection reset by peer', naming
    neither the rank nor the signal, with training: null; and every epoch line printed once per rank."""
    args = ["device.devices=2", "epochs=3", "data.train_limit=20000", *TINY, f"output_root={tmp_path / 'outputs'}"]
    env = {**os.environ, "HWBENCH_DATA": data_root, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hwbench", *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    shown = []
    for line in proc.stdout:  # type: ignore[union-attr]
        shown.append(line)
        if line.startswith("epoch 1/3 done"):
            break
    # the job's own process started rank 1 (Lightning: python -m hwbench ... ddp_rank1)
    (rank1,) = [p for p in psutil.Process(proc.pid).children(recursive=True) if "hwbench" in p.cmdline()
                and any(a.startswith("hydra.job.name=ddp_rank") for a in p.cmdline())]  # fmt: skip
    assert "hydra.job.name=ddp_rank1" in rank1.cmdline()
    rank1.send_signal(signal.SIGKILL)
    rest, stderr = proc.communicate(timeout=300)
    shown.append(rest)
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    ((folder, record),) = [(p.parent, read_record(p)) for p in (tmp_path / "outputs").rglob("results.json")]
    reason = f"rank 1 was killed by SIGKILL after 1 epoch(s) (its log: {folder / 'ddp_rank1.log'})"
    assert stderr.strip().splitlines()[-1] == f"error: ffnn cpu x2 epochs=3: failed: {reason}"
    assert record.status == "failed" and record.reason == reason
    assert len(record.training.epochs) == 1 and record.training.partial  # the finished epoch, kept
    assert record.training.overall.samples_per_sec > 0
    console = "".join(shown)
    assert console.count("epoch 1/3 done") == 1 and console.count("cpu kernels:") == 1  # rank 0's lines alone
    assert "epoch 1/3 done" in (folder / "ddp_rank1.log").read_text()  # rank 1's, in its log file


def test_a_stop_signal_reaches_every_rank_and_the_finished_epochs_are_kept(data_root, tmp_path) -> None:
    """SIGTERM to hwbench in the second epoch of a 2-rank job: it reaches the job's process (rank 0), which passes
    it on to the rank it started; each stops at its own safe point and none is left running. Without the passing
    on, rank 1 meets rank 0's closed connection with no signal of its own and ends without a word of it."""
    args = ["device.devices=2", "epochs=3", "data.train_limit=20000", *TINY, f"output_root={tmp_path / 'outputs'}"]
    env = {**os.environ, "HWBENCH_DATA": data_root, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hwbench", *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.startswith("epoch 1/3 done"):
            break
    (rank1,) = [p for p in psutil.Process(proc.pid).children(recursive=True) if "hwbench" in p.cmdline()
                and "hydra.job.name=ddp_rank1" in p.cmdline()]  # fmt: skip
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted by SIGTERM")
    ((folder, record),) = [(p.parent, read_record(p)) for p in (tmp_path / "outputs").rglob("results.json")]
    finished = record.interruption.epochs_finished
    assert record.status == "interrupted" and record.reason == f"SIGTERM after {finished} epoch(s)" and finished >= 1
    assert len(record.training.epochs) == finished < 3 and record.training.partial
    # rank 1 ends too: by itself, or once rank 0's process has exited where it waited in a collective on rank 0
    deadline = time.monotonic() + 60
    while not ended(rank1) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ended(rank1)
    assert "error: interrupted by SIGTERM" in (folder / "ddp_rank1.log").read_text()  # rank 1 took the signal


def ended(proc: psutil.Process) -> bool:
    """Gone, or a zombie that its new parent has not reaped yet (it was orphaned when rank 0 exited)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_more_gpus_than_the_machine_has_is_a_skip_record(hwbench_cli, tmp_path) -> None:
    n = max(2, torch.cuda.device_count() + 1)  # on a machine without CUDA: "no CUDA device"
    result = hwbench_cli("-m", "device=gpu", f"device.devices={n}", "arch=ffnn", "epochs=1")
    assert result.returncode == 1  # its every job skipped: none ran (the README's exit rule)
    assert result.stderr.strip().splitlines()[-1].startswith("error: every job was skipped, none ran: ")
    ((_, record),) = records(tmp_path / "outputs").items()
    assert record.status == "skipped" and record.world_size == n
    (line,) = [line for line in result.stdout.splitlines() if "skipped" in line]  # one line says why
    assert line.startswith(f"ffnn gpu x{n} epochs=1: skipped: ")


def installed(module: str) -> bool:
    """find_spec of a submodule imports its parent package: without the parent it raises instead of None."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.skipif(not installed("hydra_plugins.hydra_submitit_launcher"),
                    reason="the cluster extra is not installed: pip install -e '.[cluster]'")  # fmt: skip
def test_submitit_local_sweep_lands_in_one_sweep_folder(hwbench_cli, tmp_path, capsys) -> None:
    """Repeats and DDP through submitit: every job of the sweep, each repeat in a folder of its own (1-device jobs
    under submitit_local: test_loggers, test_matmul_peak, test_job_process)."""
    args = ("-m", "hydra/launcher=submitit_local", "device.devices=2", "repeats=2", "epochs=1",
            "data.train_limit=1024")  # fmt: skip
    ok(hwbench_cli(*args, *TINY))
    (sweep,) = (tmp_path / "outputs" / "multiruns").iterdir()
    jobs = records(sweep)
    assert sorted((r.world_size, r.repeat, r.status) for r in jobs.values()) == [(2, 1, "ok"), (2, 2, "ok")]
    assert all(job.endswith(f"_r{record.repeat}") for job, record in jobs.items())
    assert all(list((sweep / job).glob("events.out.tfevents*")) for job in jobs)
    assert len(list(sweep.glob(".submitit/*/*_result.pkl"))) == 2
    assert compare([str(sweep), "--out", str(tmp_path / "report")]) == 0
    assert "2 records (2 ok" in capsys.readouterr().out


@cuda
def test_one_gpu_ddp_job_starts_nccl(hwbench_cli, tmp_path) -> None:
    ok(hwbench_cli("device=gpu", "device.strategy=ddp", "epochs=1", "arch=ffnn", "data.train_limit=2048"))
    ((_, record),) = records(tmp_path / "outputs").items()
    assert (record.status, record.strategy, record.backend, record.world_size) == ("ok", "DDPStrategy", "nccl", 1)
