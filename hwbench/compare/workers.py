"""Worker processes for compare's slow parts: listing folders and reading records, drawing plots."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
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


def workers(tasks: int, processes: int | None = None) -> Executor:
    """A pool of worker processes for ``tasks`` tasks: ``processes`` of them (default one per usable CPU), never
    more than tasks. Linux forks them (they start at once, with this process's modules and data); elsewhere
    they start the platform's way. One task, or one process: the tasks run here."""
    n = min(tasks, processes or usable_cpus())
    if n < 2:
        return InProcess()
    return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork" if sys.platform == "linux" else None))
