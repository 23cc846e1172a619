"""A run's own stability: its steady-state window timed in sub-windows, and how much their rates spread.

The windows are each steady epoch where there are at least ``MIN_WINDOWS`` of them, else equal shares of each
steady epoch (or of the only epoch after warm-up), ending at Lightning steps: the training clock reads them as it
reads an epoch's end (one device sync a window, none in the step). A short epoch runs in smaller groups of steps
so that it has a Lightning step at each window's end (InMemoryDataModule.plan_groups).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hwbench.record.parts import Stability

if TYPE_CHECKING:
    from hwbench.measure.training_clock import Mark

MIN_WINDOWS = 5


def windows_per_epoch(epochs: int) -> int:
    """Sub-windows in each steady epoch: every epoch after the first is steady (the only one, after warm-up)."""
    steady = max(1, epochs - 1)
    return math.ceil(MIN_WINDOWS / steady)


def group_plan(epochs: int, warmup_steps: int) -> tuple[int, int]:
    """What each epoch needs of its groups of steps (InMemoryDataModule.plan_groups): at least this many Lightning
    steps after these many warm-up steps."""
    return windows_per_epoch(epochs), warmup_steps if epochs == 1 else 0


def edges(start: int, end: int, windows: int, group: int) -> list[int]:
    """The optimizer steps where each window but the last ends: the ends of Lightning steps (groups of ``group``
    optimizer steps from ``start``) nearest to ``windows`` equal shares of ``start..end``, each once."""
    ends = list(range(start + group, end, group))  # where a Lightning step ends inside the span
    picked = {min(ends, key=lambda e: abs(e - (start + (end - start) * i / windows))) for i in range(1, windows)}
    return sorted(picked) if ends else []


def stability(marks: Sequence[Mark], world_size: int) -> Stability | str:
    """The windows' rates and their spread, from the clock's marks at the windows' edges; or why there is none."""
    pairs = [(a, b) for a, b in itertools.pairwise(marks) if b.steps > a.steps and b.seconds > a.seconds]
    if len(pairs) < 2:
        return (f"{len(pairs)} steady window(s): too few optimizer steps after warm-up to time the run in "
                f"{MIN_WINDOWS} windows (raise data.train_limit or epochs)")  # fmt: skip
    rates = [(b.samples - a.samples) * world_size / (b.seconds - a.seconds) for a, b in pairs]
    median = statistics.median(rates)
    q1, _, q3 = statistics.quantiles(rates, n=4, method="inclusive")
    return Stability(window_rates=rates, window_steps=[b.steps - a.steps for a, b in pairs], median=median,
                     iqr=q3 - q1, iqr_over_median=(q3 - q1) / median if median > 0 else 0.0)  # fmt: skip
