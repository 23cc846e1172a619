"""Jobs forked from a template process: a fresh process per job without paying an interpreter's start and torch's
imports each time.

The template is Python's forkserver with torch, Lightning, torchmetrics, Hydra and hwbench's job modules preloaded:
it imports them and does nothing else (no device, no thread, no data, no job), then forks one child per job. Each
child has its own process and heap and none of another job's CUDA context, thread pools, kernel choices or
allocator state; it runs ``python -m hwbench`` with the job's own command line, as an interpreter started afresh
would. Where fork is not safe (not Linux) or ``HWBENCH_JOB_START=exec`` asks, a job starts a new interpreter.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import runpy
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path

# imported once by the template, never again by a job (names only: nothing here imports them)
PRELOAD = ("torch", "torchvision", "torchmetrics", "lightning", "hydra", "omegaconf", "pydantic",
           "hwbench.cli", "hwbench.job.runner", "hwbench.compare.sweep_end", "hwbench.hydra_adapters.sweep_time",
           "hydra.experimental.callback")  # fmt: skip
JOB_NAME = b"hwbench-job"  # what ps, top and psutil's name() show for a forked job (its command line is the template's)
TEMPLATE_ENVIRONMENT = {"PYTORCH_NVML_BASED_CUDA_CHECK": "1", "OPENBLAS_NUM_THREADS": "1"}
SWITCH = "HWBENCH_JOB_START"  # "exec": every job starts a new interpreter (the way to compare the two)


def exec_reason() -> str | None:
    """Why jobs start a new interpreter here rather than from the template (None: from the template)."""
    if os.environ.get(SWITCH) == "exec":
        return f"{SWITCH}=exec"
    if not sys.platform.startswith("linux"):  # macOS's system libraries are not fork-safe; Windows has no fork
        return f"no template process on {sys.platform} (fork is not safe there)"
    return None


def start_from_template(argv: Sequence[str], cwd: str, env: Mapping[str, str], outcome: Connection,
                        variable: str) -> multiprocessing.process.BaseProcess:  # fmt: skip
    """Fork a job from the template (started, with its imports, by the first job of this process): ``argv`` is
    ``python -m hwbench``'s arguments; ``variable`` is set to ``outcome``'s descriptor number in the job."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    job = context.Process(target=job_main, args=(list(argv), cwd, dict(env), outcome, variable), name="hwbench-job")
    with template_environment():  # the template, if this starts it, inherits it; the job gets ``env``
        job.start()
    return job


def start_resource_tracker() -> None:
    """multiprocessing's resource tracker, started before the stop signals are blocked around a job's start: starting
    it unblocks SIGTERM, and a template started after it would die of SLURM's SIGTERM to the job (docs/cluster.md)."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


@contextlib.contextmanager
def template_environment() -> Iterator[None]:
    """What the template starts with, beside this process's environment: torch.cuda.is_available() through NVML,
    which does not initialize the CUDA driver (torch's documented fork-safe check), should an import ask it; and
    numpy's OpenBLAS without the thread pool it starts at import (a job limits it to one thread anyway:
    hwbench.devices.quiet_blas_threads)."""
    before = {name: os.environ.get(name) for name in TEMPLATE_ENVIRONMENT}
    os.environ.update(TEMPLATE_ENVIRONMENT)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def job_main(argv: list[str], cwd: str, env: dict[str, str], outcome: Connection, variable: str) -> None:
    """In the forked job: the job's folder, environment and command line, then ``python -m hwbench``."""
    name_process(JOB_NAME)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    os.environ[variable] = f"{outcome.fileno()}:{env[variable].split(':', 1)[1]}"  # this process's descriptor
    sys.argv = ["-m", *argv]  # as python -m sets it while it finds the module; runpy sets [0] to its path
    try:
        runpy.run_module("hwbench", run_name="__main__", alter_sys=True)
    finally:
        logging.shutdown()  # forked children end in os._exit: no atexit handlers flush the job's logs
        sys.stdout.flush()
        sys.stderr.flush()


def name_process(name: bytes) -> None:
    """Linux's name for this process (prctl PR_SET_NAME, 15 bytes at most); nothing where libc cannot do it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(15, name[:15], 0, 0, 0)  # 15: PR_SET_NAME (<linux/prctl.h>)


def inherited() -> list[str]:
    """What a job forked from the template found already there that a fresh interpreter would not have: empty for
    a clean start. The template must not have started a thread (OpenMP's pool included: its threads would show in
    the template's task list) or touched CUDA."""
    import torch  # the template imported it: nothing to pay

    found = []
    if threading.active_count() > 1:
        found.append(f"{threading.active_count() - 1} Python thread(s) besides the main one")
    if torch.cuda.is_initialized():
        found.append("an initialized CUDA context")
    tasks = Path(f"/proc/{os.getppid()}/task")
    if tasks.is_dir() and (n := len(list(tasks.iterdir()))) > 1:
        found.append(f"a template process with {n} threads (a thread pool ran there)")
    return found
