"""Turn the signals that stop a run into one exception, so that the run can record what it finished.

Only the first signal counts: every later one is ignored until the process has exited, so a second Ctrl-C
can neither cut the record short nor end the process by the signal or with a traceback at exit.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from hwbench.errors import Interrupted

# Ctrl-C; what SLURM, Kubernetes and `docker stop` send; SLURM's usual pre-timeout warning (--signal=USR1), and
# submitit's (--signal=USR2@120: hydra/launcher=slurm)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


@contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Within the block the kernel holds the stop signals pending, and a process started there inherits them
    blocked: it takes the ones that came meanwhile once :func:`signals_raise_interrupted` handles them, never
    with Python's default handlers in its first second (a traceback, or a death that records nothing)."""
    if not hasattr(signal, "pthread_sigmask"):  # not on Windows
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)  # a signal that came meanwhile is raised here


def ignore_stop_signals() -> None:
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


class StopSignals:
    """The stop signals of one block: the first raises :class:`Interrupted` where the program is, and later
    ones are ignored.

    Where it cannot be raised, it is raised at the next :meth:`safe_point`: while :meth:`held` (the record being
    written), and when a finalizer or a gc callback was running (Python swallows an exception raised there and
    reports it to ``sys.unraisablehook``; jax's gc callback runs during training).
    """

    def __init__(self) -> None:
        self.first: int | None = None  # the first signal's number
        self.holding = False
        self.pending = False  # arrived but not raised to the program yet
        self.passes: list[Callable[[int], None]] = []  # who else the first signal goes to (the DDP ranks started here)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        # stateful, not only SIG_IGN: Lightning's teardown reinstalls the handlers it found, this one included
        if self.first is not None:
            return
        self.first = signum
        ignore_stop_signals()
        for send in self.passes:
            send(signum)
        if self.holding:
            self.pending = True
        else:
            raise Interrupted(signum)

    def pass_on_to(self, send: Callable[[int], None]) -> None:
        """The first signal goes on to ``send`` too; one that has come already, at once."""
        self.passes.append(send)
        if self.first is not None:
            send(self.first)

    def swallowed(self, unraisable: Any) -> bool:
        """For ``sys.unraisablehook``: True (and raised again later) when the exception Python could not raise is
        this signal's."""
        if isinstance(unraisable.exc_value, Interrupted):
            self.pending = True
            return True
        return False

    def safe_point(self) -> None:
        """Raise the signal's exception here if it is still to be raised."""
        if self.pending and not self.holding:
            self.pending = False
            raise Interrupted(self.first)  # type: ignore[arg-type]

    @contextmanager
    def held(self) -> Iterator[None]:
        """Work a signal must not cut short (writing the record): a signal that arrives meanwhile is raised
        after it."""
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        self.safe_point()


@contextmanager
def signals_raise_interrupted() -> Iterator[StopSignals]:
    """Within the block, SIGINT, SIGTERM and SIGUSR1 raise :class:`Interrupted` (Lightning keeps its own
    SIGTERM notifier and calls this handler after it). The previous handlers come back afterwards, unless a
    signal stopped the block: then every stop signal stays ignored for the rest of the process."""
    stop = StopSignals()
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    previous_hook: Callable[[Any], Any] = sys.unraisablehook

    def unraisable(unraisable: Any) -> None:
        if not stop.swallowed(unraisable):  # no "Exception ignored in ..." traceback for a signal
            previous_hook(unraisable)

    for s in STOP_SIGNALS:
        signal.signal(s, stop.handle)
    sys.unraisablehook = unraisable
    stopping = False
    try:
        if hasattr(signal, "pthread_sigmask"):  # started with them blocked (stop_signals_blocked): taken from here
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        yield stop
        stop.safe_point()  # a signal swallowed after the block's last safe point
    except Interrupted:  # this block's signal, or an inner block's on its way out
        stopping = True
        raise
    finally:
        sys.unraisablehook = previous_hook
        if stopping or stop.first is not None:
            ignore_stop_signals()
        else:
            for s, handler in previous.items():
                signal.signal(s, handler)
