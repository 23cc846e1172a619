"""Scaling with the device count, set on the rows of ok runs (speed-ups between setups: verdicts.py)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from hwbench.compare.rows import Row


def timed_rows(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if r.timed]


def add_scaling(rows: list[Row]) -> list[list[Row]]:
    """Set speed-up over 1 device and scaling efficiency on ok rows whose group has a 1-device run; return
    the groups that span more than one world size (for the scaling plot), each sorted by world size."""
    groups: dict[str, list[Row]] = {}
    for r in timed_rows(rows):
        groups.setdefault(r.scaling_group, []).append(r)
    scaling = []
    for group in groups.values():
        if len({r.world_size for r in group}) < 2:
            continue
        group.sort(key=lambda r: (r.world_size, r.started or ""))
        scaling.append(group)
        ones = [r.train_samples_per_sec for r in group if r.world_size == 1]
        if not ones:
            continue
        one = statistics.median(ones)  # a repeated 1-device run: its median is the reference
        for r in group:
            r.scaling_speedup = r.train_samples_per_sec / one  # type: ignore[operator]
            r.scaling_efficiency = r.scaling_speedup / r.world_size
    return scaling
