"""One epoch edge: the training clock is the one place that synchronizes the device at a mark; every figure read at
an epoch's edges (energy, the GPU's busy time) takes the clock's reading. Counted on a real CPU run in this process,
with a counting stand-in for the sync call in every hwbench module that holds it."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

import hwbench.devices
from hwbench.job.runner import run
from hwbench.measure.training_clock import TrainingClock

# they time their own work before training, after it, or after the test: never at an epoch's edge
OFF_THE_EDGES = {"hwbench.measure.canary", "hwbench.measure.matmul_peak", "hwbench.measure.inference"}


def test_each_mark_of_the_clock_is_one_device_sync_and_no_other_figure_syncs_at_the_edges(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs: Counter[str] = Counter()
    sync = hwbench.devices.synchronize
    holders = [m for name, m in list(sys.modules.items())
               if name.startswith("hwbench.") and getattr(m, "synchronize", None) is sync]  # fmt: skip
    assert "hwbench.measure.training_clock" in {m.__name__ for m in holders}
    for module in holders:
        monkeypatch.setattr(module, "synchronize", lambda device, name=module.__name__: syncs.update([name]))
    marks: list[float] = []
    now = TrainingClock.now
    monkeypatch.setattr(TrainingClock, "now", lambda clock: marks.append(now(clock)) or marks[-1])

    record = run(make_cfg("epochs=3", "data.train_limit=4000", "device.threads=1"), tmp_path / "run")
    assert record.status == "ok" and record.resources.energy_seconds > 0  # energy was read, at the clock's marks
    at_edges = {name: n for name, n in syncs.items() if name not in OFF_THE_EDGES}
    assert at_edges == {"hwbench.measure.training_clock": len(marks)}  # one sync per mark, and only the clock's
    # a start and an end per epoch, and the steady epochs' sub-window edges between them
    windows = record.training.stability.window_rates  # the two steady epochs', edges included
    assert len(windows) >= 2 and len(marks) == 2 * 3 + len(windows) - 2
