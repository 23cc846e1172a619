"""Speed-ups against a baseline run, and scaling with the device count, set on the rows of ok runs."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from hwbench.compare.rows import Row


def timed_rows(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if r.timed]


def add_scaling(rows: list[Row]) -> list[list[Row]]:
    """Set speed-up over 1 device and scaling efficiency on ok rows whose group has a 1-device run; return
    the groups that span more than one world size (for the scaling plot), each sorted by world size."""
    groups: dict[int, list[Row]] = {}
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


def names(row: Row, spec: str) -> bool:
    return spec in row.label or spec in row.path


SpeedupGroup = tuple[str, int | None]  # network and epochs: the runs a speed-up compares


def add_speedups(rows: list[Row], baseline: str | None) -> dict[SpeedupGroup, Row]:
    """Set each ok row's speed-up against the baseline of its network and epochs; return each group's baseline.

    Runs that differ in their epochs are not compared: their steady-state windows differ. A group of one run
    has nothing to compare against: no speed-up, no baseline. ``baseline`` is a substring of a row's label
    or of its results.json path (the path tells apart jobs of one sweep, whose labels are the same); without
    one, the slowest row of each group is its baseline. A noisy row (the machine was busy) is never one: a group
    with only noisy rows has no speed-ups. Raises ValueError when it names nothing, a noisy row alone, or more
    than one row of a group.
    """
    groups: dict[SpeedupGroup, list[Row]] = {}
    for r in timed_rows(rows):
        groups.setdefault((r.arch, r.epochs), []).append(r)
    if baseline is not None and not any(names(r, baseline) for group in groups.values() for r in group):
        hint = "give part of host/device/run_name or of a results.json path"
        raise ValueError(f"--baseline {baseline!r} names no ok run: {hint}")
    if baseline is not None and not any(names(r, baseline) and not r.noisy for g in groups.values() for r in g):
        raise ValueError(f"--baseline {baseline!r} names only noisy runs (the machine was busy while they were "
                         f"timed): a noisy run is never a baseline")  # fmt: skip
    bases: dict[SpeedupGroup, Row] = {}
    for (arch, epochs), group in groups.items():
        candidates = [r for r in group if not r.noisy]
        if len(group) < 2 or not candidates:
            continue
        if baseline is not None:
            matches = [r for r in candidates if names(r, baseline)]
            if len(matches) > 1:
                listed = ", ".join(f"{r.label} ({r.job})" for r in matches[:5])
                more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
                raise ValueError(f"--baseline {baseline!r} matches {len(matches)} {arch} runs of {epochs} epochs: "
                                 f"{listed}{more}")  # fmt: skip
            candidates = matches or candidates  # a group the spec does not name falls back to its slowest
        base = bases[arch, epochs] = min(candidates, key=lambda r: r.train_samples_per_sec)  # type: ignore[arg-type,return-value]
        for r in group:
            r.speedup = r.train_samples_per_sec / base.train_samples_per_sec  # type: ignore[operator]
    return bases
