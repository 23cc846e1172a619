"""Worker processes for compare's slow parts: listing folders and reading records, drawing plots."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any


class InProcess(Executor):
    """Runs each task here, when it is submitted: where one CPU or one task makes workers pointless."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:  # raised again where its result is asked for, as a worker's would be
            future.set_exception(err)
        return future


def usable_cpus() -> int:
    # devices.available_cores says the same, but importing devices imports torch: seconds compare never needs
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>: the signal a process gets when its parent dies


def quiet_worker(parent: int) -> None:
    """A worker leaves Ctrl-C to compare (a terminal sends it to every process of the group: each worker would
    print a traceback), dies of SIGTERM without a word (forked, it has compare's handler), and on Linux dies
    with compare: a signal that stops compare while the pool forks may leave a worker compare never knew of."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # compare died before that
            os._exit(1)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked while it was forked


def start(pool: ProcessPoolExecutor) -> None:
    """Fork every worker now, with the stop signals held back until each has run quiet_worker: a signal in
    between would reach a worker that still has compare's handler. (A forking pool starts all its workers on
    its first task; the main thread alone then takes the signals, as Python wants.)"""
    if not hasattr(signal, "pthread_sigmask"):
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pool.submit(int)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


@contextlib.contextmanager
def workers(tasks: int, processes: int | None = None) -> Iterator[Executor]:
    """A pool of worker processes for ``tasks`` tasks: ``processes`` of them (default one per usable CPU), never
    more than tasks. Linux forks them (they start at once, with this process's modules and data); elsewhere
    they start the platform's way. One task, or one process: the tasks run here.

    Whatever stops this process meanwhile (a signal, an error) ends the workers at once: waiting for their
    tasks would keep a stopped compare running for seconds."""
    n = min(tasks, processes or usable_cpus())
    if n < 2:
        yield InProcess()
        return
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else None)
    pool = ProcessPoolExecutor(n, mp_context=context, initializer=quiet_worker, initargs=(os.getpid(),))
    try:
        if context.get_start_method() == "fork":
            start(pool)
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():  # the pool's workers: compare starts no other process
            child.terminate()
        raise
    pool.shutdown()
