"""The stop signals' rules, with real signals sent to this process: the first raises once, where the program
can take it; every later one is ignored."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from lightning.pytorch import Trainer

from hwbench.errors import Interrupted
from hwbench.job.console.quiet import quiet_lightning
from hwbench.launch.signals import STOP_SIGNALS, signals_raise_interrupted


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


@contextmanager
def logging_to_a_full_pipe() -> Iterator[int]:
    """A log handler on the root logger whose file is a pipe nobody reads, already full: the next line blocks in
    the write, holding the file's lock, as a line to a slow disk does. Yields the pipe's read end."""
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETFL, os.O_NONBLOCK)
    with suppress(BlockingIOError):
        while True:
            os.write(write, b"x" * 4096)
    fcntl.fcntl(write, fcntl.F_SETFL, 0)
    stream = open(write, "w")  # noqa: SIM115 (closed after the read end, so that its last flush cannot block)
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    try:
        yield read
    finally:
        logging.getLogger().removeHandler(handler)
        os.close(read)
        with suppress(OSError):
            stream.close()


def test_a_sigterm_while_a_log_line_is_written_stops_the_run_without_a_logging_error(capfd, monkeypatch) -> None:
    """Lightning's SIGTERM notifier logs from inside the handler: in a write it is a reentrant write to the same
    file, and a "--- Logging error ---" traceback on the screen (seen in CI). hwbench's settings keep it quiet."""
    monkeypatch.setattr(logging.getLogger("lightning.pytorch"), "propagate", True)  # as under Hydra's handlers
    signal_connector = logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector")
    level = signal_connector.level
    quiet_lightning()
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    main = threading.get_ident()

    def sigterm_in_the_write(pipe: int) -> None:
        time.sleep(0.3)  # the main thread is blocked in the write by now
        signal.pthread_kill(main, signal.SIGTERM)
        time.sleep(10)  # had nothing raised, unblock the write: a failed test, not a hung one
        with suppress(OSError):
            os.read(pipe, 1 << 20)

    try:
        with pytest.raises(Interrupted) as stopped, signals_raise_interrupted(), logging_to_a_full_pipe() as pipe:
            trainer._signal_connector.register_signal_handlers()  # Lightning's notifier, then hwbench's handler
            try:
                threading.Thread(target=sigterm_in_the_write, args=(pipe,), daemon=True).start()
                logging.getLogger("hwbench").warning("epoch 1/100 done")
            finally:
                trainer._signal_connector.teardown()
    finally:
        signal_connector.setLevel(level)
    assert stopped.value.signum == signal.SIGTERM
    assert "Logging error" not in capfd.readouterr().err
