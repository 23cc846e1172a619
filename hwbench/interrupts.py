"""Turn the signals that stop a run into one exception, so that the run can record what it finished."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from hwbench.errors import Interrupted

# Ctrl-C; what SLURM, Kubernetes and `docker stop` send; SLURM's usual pre-timeout warning (--signal=USR1)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


def _raise(signum: int, frame: FrameType | None) -> None:
    for s in STOP_SIGNALS:  # a second Ctrl-C while the record is written must not cut it short
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


@contextmanager
def signals_raise_interrupted() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGUSR1 raise :class:`Interrupted` (Lightning keeps its own
    SIGTERM notifier and calls this handler after it); the previous handlers come back afterwards."""
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
