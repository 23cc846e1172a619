"""Every job in a fresh process, and whether the machine was quiet: real sweeps, real signals, real busy loops."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_faults import no_traceback, records, start, wait_for
from test_scaleout import installed

from conftest import CLOCK_ONLY, cuda
from hwbench.compare import main as compare
from hwbench.job.runner import run
from hwbench.launch.process import CALLER_PROCESS
from hwbench.measure.gpu_load import GpuLoad
from hwbench.measure.machine_load import LoadWindows
from hwbench.record.results import ResultsRecord

# one thread and torch's kernels: the runs' rounding is the same in any process (an auto choice may differ)
SAME_MATH = ("device=cpu", "device.threads=1", "device.cpu_kernels.linear=torch", "device.cpu_kernels.dropout=torch")
TINY = ("device=cpu", "data.train_limit=1000")
QUICK = CLOCK_ONLY  # where a test reads no measurement but the clock's


def test_each_job_of_a_sweep_runs_in_its_own_process_and_gives_what_one_process_gave(
    data_root, make_cfg, tmp_path
) -> None:
    proc = start(["-m", "seed=0,1", "epochs=1", "data.train_limit=1000", *SAME_MATH], data_root, tmp_path)
    stdout, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    fresh = [r for _, r in sorted(records(tmp_path / "outputs").items())]
    pids = [r.job.pid for r in fresh]
    assert len(set(pids)) == 2 and proc.pid not in pids  # two processes, none of them the sweep's
    assert all(r.job.shared is None and r.job.start_seconds > 0 and r.job.died is None for r in fresh)
    # forked from the template: no thread, CUDA context or thread pool there before the job's own
    assert all(r.job.started_by == "template" and r.job.inherited == [] for r in fresh)
    assert all(r.phases.train > 0 and r.phases.test > 0 and r.phases.write > 0 for r in fresh)
    (line,) = [line for line in stdout.splitlines() if line.startswith("time: ")]  # where the sweep's time went
    assert " for 2 job(s): starting " in line and ", training " in line and ", testing and inference " in line

    shared = [run(make_cfg(f"seed={seed}", "epochs=1", "data.train_limit=1000", *SAME_MATH), tmp_path / str(seed))
              for seed in range(2)]  # fmt: skip
    assert {r.job.pid for r in shared} == {os.getpid()} and shared[0].job.shared == CALLER_PROCESS
    assert [(r.status, r.metrics.test_acc) for r in fresh] == [(r.status, r.metrics.test_acc) for r in shared]

    for record in fresh:  # the machine's load is read in every run (quiet or not on a shared VM: not asserted)
        load = record.machine_load
        figures = (load.window_seconds, load.others_cpu_percent, load.steal_percent, load.load_average, load.cpu_mhz)
        assert all(f is not None and math.isfinite(f) for f in figures) and load.unavailable is None
        assert load.cores == psutil.cpu_count() and load.gpu_other_processes is None  # a CPU run reads no GPU


def job_process(sweep: subprocess.Popen) -> psutil.Process:
    """The sweep's job process now running: forked from the template (named hwbench-job), else a new interpreter."""
    (job,) = [p for p in psutil.Process(sweep.pid).children(recursive=True) if is_job(p)]
    return job


def is_job(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return process.name() == "hwbench-job" or "hydra.mode=RUN" in process.cmdline()
    return False


def test_a_run_name_with_a_quote_and_a_backslash_runs_in_its_job_process(hwbench_cli, tmp_path) -> None:
    """Before, the job process got hydra.run.dir="<folder>" unquoted: a 40-line Hydra traceback, no run."""
    result = hwbench_cli("run_name='a\"b\\c'", *TINY, *QUICK, "epochs=1")  # as a shell passes "run_name='a\"b\\c'"
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    ((name, record),) = records(tmp_path / "outputs").items()
    assert name.endswith('_a"b\\c') and record.status == "ok" and record.run_name == 'a"b\\c'


@pytest.mark.skipif(not installed("hydra_plugins.hydra_submitit_launcher"),
                    reason="the cluster extra is not installed: pip install -e '.[cluster]'")  # fmt: skip
def test_under_submitit_a_job_whose_process_dies_is_named_and_the_sweep_exits_1(data_root, tmp_path) -> None:
    """Before, the sweep exited 0 and named nothing: the job's line was only in .submitit/<id>/<id>_0_log.err,
    whose .out said "Job completed successfully"; and an empty folder named .submitit/%j was left behind."""
    proc = start(["-m", "hydra/launcher=submitit_local", "epochs=1000", *TINY, *QUICK], data_root, tmp_path)
    folder = None
    while proc.poll() is None:  # the job's process, once it has recorded its first epoch
        job = next((p for p in psutil.Process(proc.pid).children(recursive=True) if is_job(p)), None)
        folder = folder or next((tmp_path / "outputs").glob("multiruns/*/0_ffnn_cpu_e1000"), None)
        if job is not None and folder is not None and (folder / "results.json").exists():
            record = records(folder)[folder.name]
            if record.training and record.training.epochs:
                job.send_signal(signal.SIGSEGV)
                break
        time.sleep(0.05)
    stdout, _ = proc.communicate(timeout=300)
    stderr = (tmp_path / "stderr.txt").read_text()
    no_traceback(stderr)
    assert proc.returncode == 1, stdout + stderr
    assert stderr.strip().splitlines()[-1] == (
        "error: 1 job(s) did not finish ok: 0_ffnn_cpu_e1000 (killed by SIGSEGV) (see their results.json)"
    )
    dead = records(tmp_path / "outputs")["0_ffnn_cpu_e1000"]
    assert dead.status == "failed" and dead.job.died == "killed by SIGSEGV" and dead.training.partial
    (sweep,) = (tmp_path / "outputs" / "multiruns").iterdir()
    (submitted,) = (sweep / ".submitit").iterdir()  # the job's own folder, and no literal %j beside it
    assert submitted.name.isdigit() and list(submitted.glob("*_0_log.out"))


def test_a_job_whose_process_dies_is_failed_naming_how_and_the_sweep_goes_on(data_root, tmp_path) -> None:
    proc = start(["-m", "epochs=100,1", *TINY, *QUICK], data_root, tmp_path)
    wait_for(proc, "epoch 1/100 done")  # job 0 has recorded its first epoch
    job_process(proc).send_signal(signal.SIGKILL)
    proc.communicate(timeout=300)
    stderr = (tmp_path / "stderr.txt").read_text()
    no_traceback(stderr)
    assert proc.returncode == 1
    assert stderr.strip().splitlines()[-1] == (
        "error: 1 job(s) did not finish ok: 0_ffnn_cpu_e100 (killed by SIGKILL) (see their results.json)"
    )
    found = records(tmp_path / "outputs")
    assert [found[j].status for j in ("0_ffnn_cpu_e100", "1_ffnn_cpu_e1")] == ["failed", "ok"]  # the sweep went on
    dead = found["0_ffnn_cpu_e100"]
    assert dead.job.died == "killed by SIGKILL" and dead.job.started_by == "template"
    assert dead.reason.startswith("its process died (killed by SIGKILL) after")
    assert len(dead.training.epochs) >= 1 and dead.training.partial  # what it had recorded is kept
    ok = found["1_ffnn_cpu_e1"].job
    assert ok.started_by == "template" and ok.exec_reason is None
    assert "ffnn cpu epochs=100: failed: its process died (killed by SIGKILL) after" in stderr


def test_a_job_in_a_new_interpreter_whose_process_dies_is_failed_naming_how(data_root, tmp_path, monkeypatch) -> None:
    """A new interpreter per job (where fork is not safe, and on request): its death is named as a forked job's is
    (the sweep going on after a dead job: the test above)."""
    monkeypatch.setenv("HWBENCH_JOB_START", "exec")
    proc = start(["epochs=100", *TINY, *QUICK], data_root, tmp_path)
    wait_for(proc, "epoch 1/100 done")  # the job has recorded its first epoch
    job_process(proc).send_signal(signal.SIGSEGV)
    proc.communicate(timeout=300)
    stderr = (tmp_path / "stderr.txt").read_text()
    no_traceback(stderr)
    assert proc.returncode == 1
    assert (
        stderr.strip()
        .splitlines()[-1]
        .startswith("error: ffnn cpu epochs=100: failed: its process died (killed by SIGSEGV) after")
    )
    (dead,) = records(tmp_path / "outputs").values()
    assert dead.status == "failed" and dead.job.died == "killed by SIGSEGV"
    assert dead.reason.startswith("its process died (killed by SIGSEGV) after")
    assert len(dead.training.epochs) >= 1 and dead.training.partial  # what it had recorded is kept
    assert dead.job.started_by == "exec" and dead.job.exec_reason == "HWBENCH_JOB_START=exec"


@pytest.fixture
def busy_loops() -> Iterator[list[subprocess.Popen]]:
    """A Python busy loop on every core, outside any hwbench process tree."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    yield loops
    for loop in loops:
        loop.kill()
        loop.wait()


def machine_load_text(run_dir: Path) -> str:
    """The machine_load text the run wrote to TensorBoard, read back with TensorBoard's own reader."""
    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    (event,) = acc.Tensors("machine_load/text_summary")
    return event.tensor_proto.string_val[0].decode()


def test_busy_loops_beside_a_run_make_it_noisy_and_require_quiet_refuses(hwbench_cli, busy_loops, tmp_path) -> None:
    """One sweep (the loops burn every core while it runs: one template's imports, not two): a job that times on
    the busy machine, marked noisy, and one that device.require_quiet=true stops before it times anything."""
    load = [*QUICK, "+measure.machine_load={}"]  # what the test reads: the job measures nothing else
    sweep = tmp_path / "sweep"
    result = hwbench_cli("-m", "device.require_quiet=false,true", "epochs=1", "data.train_limit=3000", "device=cpu",
                         f"hydra.sweep.dir={sweep}", *load)  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]  # the refused job did not finish ok
    found = records(sweep)
    record: ResultsRecord = found["0_ffnn_cpu_e1"]
    assert record.status == "ok" and record.machine_load.others_cpu_percent > 30  # the loops' share, at the least
    (reason,) = [n for n in record.noise if n.startswith("other processes used ")]
    assert f"noisy: {reason}" in result.stdout  # the summary line
    assert machine_load_text(sweep / "0_ffnn_cpu_e1").startswith(f"**noisy**: {reason}")
    assert compare([str(sweep / "0_ffnn_cpu_e1"), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "compare.csv").read_text().count(reason) == 1

    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "error: 1 job(s) did not finish ok: 1_ffnn_cpu_e1 (failed) (see their results.json)"
    (line,) = [line for line in lines if "the machine is busy" in line]  # the refused job's one line
    assert line.startswith("ffnn cpu epochs=1: failed: the machine is busy (other processes used ")
    assert line.endswith("device.require_quiet=true refuses to time on it: stop the other load, or set "
                         "device.require_quiet=false to time anyway (the run is then marked noisy)")  # fmt: skip
    refused = found["1_ffnn_cpu_e1"]
    assert refused.status == "failed" and refused.training is None  # nothing was timed


@cuda
def test_another_process_on_the_gpu_makes_a_gpu_run_noisy(hwbench_cli, tmp_path) -> None:
    """A process holding a CUDA context on the job's GPU (NVML lists it) all through a real GPU run."""
    holder = "import torch, time; torch.ones(1, device='cuda'); print('ready', flush=True); time.sleep(600)"
    other = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "ready"
        result = hwbench_cli("device=gpu", "epochs=1", "data.train_limit=3000", "hydra.run.dir=shared")
    finally:
        other.kill()
        other.wait()
    assert result.returncode == 0, result.stderr[-3000:]
    record: ResultsRecord = records(tmp_path / "shared")["shared"]
    assert record.status == "ok" and record.machine_load.gpu_other_processes  # named, or counted in a container
    (reason,) = [n for n in record.noise if n.startswith("other GPU processes: ")]
    assert f"noisy: {reason}" in result.stdout


def test_what_cannot_be_read_is_named_never_a_zero() -> None:
    """A CUDA GPU's other processes and throttling from NVML; where NVML cannot read it (no NVIDIA driver here),
    the part says so in its one field and leaves the GPU figures out."""
    windows = LoadWindows(GpuLoad(torch.device("cuda", 0)), cpus=None)
    windows.edge({os.getpid()}, start=True)
    sum(i * i for i in range(2_000_000))  # some CPU time in the window: the counters tick every 10 ms
    windows.edge({os.getpid()}, start=False)
    part = windows.part()
    assert part is not None and part.window_seconds > 0 and part.others_cpu_percent is not None
    assert (part.steal_percent is not None) == sys.platform.startswith("linux")  # only Linux reports steal
    if torch.cuda.is_available():
        assert part.gpu_other_processes is not None
        assert (part.gpu_throttled_seconds is None) != (part.gpu_throttle_reasons is None)  # counters or reasons
    else:
        assert part.unavailable.startswith("no NVML reading of the GPU (")
        assert part.gpu_other_processes is None and part.gpu_throttled_seconds is None


def test_the_template_imports_ask_no_device_and_start_no_thread() -> None:
    """What the template preloads (hwbench/launch/template.py) must leave a process that is safe to fork: no CUDA
    question (cudaGetDeviceCount initializes the driver, which a forked child cannot use), no thread, no pool."""
    code = """
import importlib, os, threading, torch
def asked(*args, **kwargs):
    raise AssertionError("the template asked CUDA for its devices")
torch.cuda.is_available = torch.cuda.device_count = torch._C._cuda_getDeviceCount = asked
from hwbench.launch.template import PRELOAD
for name in PRELOAD:
    importlib.import_module(name)
assert not torch.cuda.is_initialized()
assert threading.active_count() == 1, threading.enumerate()
assert len(os.listdir("/proc/self/task")) == 1, "an OS thread started (a thread pool)"
print("clean")
"""
    from hwbench.launch.template import TEMPLATE_ENVIRONMENT

    env = {**os.environ, **TEMPLATE_ENVIRONMENT}  # as the template starts
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "clean", done.stderr[-3000:]
