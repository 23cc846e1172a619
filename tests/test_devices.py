"""Device sweeps never break, and every run says what hardware it ran on."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import CLOCK_ONLY, cuda
from hwbench.record.fingerprint import fingerprint

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a machine without CUDA")


def test_fingerprint_fields_are_present_and_typed() -> None:
    fp = fingerprint(threads=2, precision="32", accelerator="cpu")
    assert isinstance(fp["host"], str) and fp["host"]
    assert isinstance(fp["cpu"], str) and fp["cpu"]
    assert isinstance(fp["physical_cores"], int) and isinstance(fp["logical_cores"], int)
    assert fp["logical_cores"] >= fp["physical_cores"] >= 1
    assert fp["threads"] == 2 and fp["precision"] == "32" and fp["accelerator"] == "cpu"
    assert isinstance(fp["ram_gb"], float) and fp["ram_gb"] > 0
    assert isinstance(fp["gpus"], list)
    assert fp["torch"] == torch.__version__ and fp["python"].count(".") == 2
    assert isinstance(fp["lightning"], str)
    if torch.cuda.is_available():
        assert fp["gpus"][0]["name"] and fp["gpus"][0]["memory_gb"] > 0 and fp["cuda"]
    else:
        assert fp["gpus"] == [] and fp["cuda"] is None and fp["cudnn"] is None


# a CPU and GPU sweep on a machine without CUDA (exit 0, skip records, one line each): tests/test_readme.py runs
# the README's own such sweep


@no_cuda
def test_a_sweep_whose_every_job_is_skipped_exits_1_naming_them(hwbench_cli) -> None:
    """The one exit rule: a sweep in which nothing ran exits 1, as a single skipped run does (below)."""
    result = hwbench_cli("-m", "device=gpu", "epochs=1", "data.train_limit=500")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "ffnn gpu epochs=1: skipped: no CUDA device" in result.stdout  # the job's own line, as in any sweep
    assert result.stderr.strip().splitlines()[-1] == (
        "error: every job was skipped, none ran: 0_ffnn_gpu_e1 (their results.json say why: a device or an execution "
        "this machine lacks)"
    )


@no_cuda
def test_single_run_on_a_missing_gpu_fails_with_one_line(hwbench_cli) -> None:
    result = hwbench_cli("device=gpu", "epochs=1")
    assert result.returncode != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: ffnn gpu epochs=1: skipped: no CUDA device: pick a device this machine has")
    )
    assert "Traceback" not in result.stderr


def test_threads_and_precision_are_applied_and_recorded(make_cfg, tmp_path: Path) -> None:
    from hwbench.job.runner import run

    before = torch.get_num_threads()
    try:
        overrides = ("device.threads=1", "device.precision=bf16-mixed", "epochs=1", "data.train_limit=512")
        record = run(make_cfg(*overrides, *CLOCK_ONLY), tmp_path)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert record.status == "ok"
    assert record.fingerprint.threads == 1 and record.fingerprint.precision == "bf16-mixed"


@cuda
def test_gpu_run_records_gpu_figures(make_cfg, tmp_path: Path) -> None:
    from hwbench.job.runner import run

    record = run(make_cfg("device=gpu", "arch=cnn", "epochs=2", "data.train_limit=5000"), tmp_path)
    assert record.status == "ok" and record.on_gpu and record.device_name == torch.cuda.get_device_name()
    assert record.training.steady.samples_per_sec > 0
    assert record.inference.latency_ms_p50 > 0


MMAPPED_BYTES = """
import ctypes, sys, torch
from hwbench.devices import keep_freed_host_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    keep_freed_host_memory()
before = libc.mallinfo2().hblkhd
x = torch.ones(5 * 2**20)  # 20 MiB, the size of a CNN activation at batch 128
print(libc.mallinfo2().hblkhd - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="checks glibc's allocator")
def test_activation_sized_tensors_come_from_the_heap_not_fresh_pages() -> None:
    def mmapped(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", MMAPPED_BYTES, mode], capture_output=True, text=True, check=True)
        return int(out.stdout)

    assert mmapped("default") >= 20 * 2**20  # glibc maps it fresh: page faults on every step that allocates it
    assert mmapped("keep") == 0  # hwbench's setting: reused from the heap
