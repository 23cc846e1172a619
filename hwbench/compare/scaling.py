"""Scaling with devices or CPU threads, set on the rows of ok runs (speed-ups between setups: verdicts.py).

A scaling group is the runs of one source and machine that differ only in how much of it they used: their device
count (DDP) or their CPU threads. Its reference is its smallest run (fewest devices, then threads); a run's
scale-up is its speed over the reference's, its efficiency that over the ratio of what each used: devices, or on a
CPU the cores its ranks' threads occupy, never more than the cores the process could use (two ranks of one thread
on the 2 cores a 2-thread run had use no more of the machine: their ideal is 1x). The world size is
``Row.world_size``; a count of nodes multiplies into it (``world``) and nowhere else.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from hwbench.compare.rows import Row

DEVICES, THREADS = "devices", "threads"


@dataclass
class Series:
    """A scaling group's runs, sorted by their size along ``axis`` (DEVICES or THREADS)."""

    rows: list[Row]
    axis: str

    def size(self, row: Row) -> int:
        return world(row) if self.axis == DEVICES else row.threads or 1

    @property
    def sizes(self) -> list[int]:
        return sorted({self.size(r) for r in self.rows})

    def speed_at(self, size: int) -> float:
        return statistics.median(r.train_samples_per_sec for r in self.rows if self.size(r) == size)  # type: ignore[type-var]

    def units_at(self, size: int) -> float:
        return statistics.median(units(r) for r in self.rows if self.size(r) == size)

    def ideal(self) -> list[float]:
        """Each size's ideal speed: the smallest's, times the ratio of the devices or cores used."""
        first = self.sizes[0]
        return [self.speed_at(first) * self.units_at(n) / self.units_at(first) for n in self.sizes]


def world(row: Row) -> int:
    """The processes that train together: devices (and, once records have them, nodes x devices)."""
    return row.world_size


def units(row: Row) -> int:
    """What a run used of its machine: its devices; on a CPU, the cores its ranks' threads occupy, at most the
    cores the process could use (more threads than cores take turns on them)."""
    if not (row.device == "cpu" or row.device.endswith("(cpu)")):
        return world(row)
    used = world(row) * (row.threads or 1)
    return min(used, row.usable_cores) if row.usable_cores else used


def timed_rows(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if r.timed]


def add_scaling(rows: list[Row], by_source: bool = True) -> list[Series]:
    """Set the scale-up over the smallest run and the scaling efficiency on the ok rows of each group that spans
    more than one device count (else thread count); return those groups, for the scaling plot. ``by_source=False``
    (--merge-sources): a group spans the folders given (a cluster's 2-node sweep and its 1-node run)."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in timed_rows(rows):
        groups.setdefault((r.source if by_source else "", r.scaling_group), []).append(r)
    scaling = []
    for group in groups.values():
        if len({world(r) for r in group}) > 1:
            axis = DEVICES
        elif len({r.threads for r in group}) > 1:
            axis = THREADS
        else:
            continue
        series = Series(sorted(group, key=lambda r: (world(r), r.threads or 0, r.started or "")), axis)
        scaling.append(series)
        first = series.sizes[0]
        reference, reference_units = series.speed_at(first), series.units_at(first)  # repeated: their median
        for r in series.rows:
            r.scaling_speedup = r.train_samples_per_sec / reference  # type: ignore[operator]
            r.scaling_efficiency = r.scaling_speedup / (units(r) / reference_units)
    return scaling
