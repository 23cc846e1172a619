"""The stop signals' rules, with real signals sent to this process: the first raises once, where the program
can take it; every later one is ignored."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from hwbench.errors import Interrupted
from hwbench.interrupts import STOP_SIGNALS, signals_raise_interrupted


@pytest.fixture(autouse=True)
def restore_handlers() -> Iterator[None]:
    """A stopped block leaves the stop signals ignored for the rest of the process: give pytest its own back."""
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    yield
    for s, handler in before.items():
        signal.signal(s, handler)


class SignalsWhenCollected:
    """An object whose finalizer receives the signal: Python cannot raise an exception out of a finalizer."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGUSR1)


def test_a_signal_swallowed_by_a_finalizer_is_raised_at_the_next_safe_point(capfd) -> None:
    with pytest.raises(Interrupted) as stopped, signals_raise_interrupted() as stop:
        SignalsWhenCollected()  # collected at once: the handler runs inside __del__, its exception is swallowed
        assert stop.pending
        stop.safe_point()
    assert stopped.value.signum == signal.SIGUSR1
    assert "Exception ignored" not in capfd.readouterr().err  # no traceback for the swallowed one either


def test_a_signal_while_held_is_raised_after_and_later_ones_are_ignored() -> None:
    done = []
    with pytest.raises(Interrupted) as stopped, signals_raise_interrupted() as stop, stop.held():
        signal.raise_signal(signal.SIGTERM)  # the record is being written: it must not be cut short
        signal.raise_signal(signal.SIGINT)  # ignored
        done.append("record written")
    assert done == ["record written"] and stopped.value.signum == signal.SIGTERM
    assert all(signal.getsignal(s) == signal.SIG_IGN for s in STOP_SIGNALS)  # ignored until the process exits
    signal.raise_signal(signal.SIGINT)  # the process goes on


def test_a_block_no_signal_stopped_gives_the_previous_handlers_back() -> None:
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    with signals_raise_interrupted():
        pass
    assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == before
