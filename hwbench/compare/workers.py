"""Worker processes for compare's slow parts (reading records, drawing plots): one per usable CPU."""

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


def workers(tasks: int) -> Executor:
    """A pool of at most ``tasks`` worker processes, one per usable CPU; Linux forks them (they start at
    once, with this process's modules and data), elsewhere they start the platform's way."""
    n = min(tasks, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if n < 2:
        return InProcess()
    return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork" if sys.platform == "linux" else None))
