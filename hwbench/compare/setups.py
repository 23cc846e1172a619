"""Runs grouped by setup (network, hardware, execution, precision, batch size, epochs): what a comparison of
thousands of runs shows.

Repeats of one setup on one kind of machine (seeds, days, the nodes of a cluster) become one bar, one line or
one table row with the median and the spread, so a plot of 5,000 runs stays as readable as one of five.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hwbench.compare.rows import Row

SetupKey = tuple[str, str, str | None, str | None, int | None, int | None]


@dataclass
class Setup:
    arch: str
    hardware: str
    execution: str | None  # eager, compiled, graph, fused: the same math run another way is another setup
    precision: str | None
    batch_size: int | None
    epochs: int | None  # runs of other lengths have other steady-state windows: another setup
    rows: list[Row] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return len(self.rows)

    # the figures below are read by every table column and plot: computed once, when first read (after the
    # speed-ups are set)
    @functools.cached_property
    def speeds(self) -> list[float]:
        return [r.train_samples_per_sec for r in self.rows]  # type: ignore[misc]

    @functools.cached_property
    def train_samples_per_sec(self) -> float:
        return statistics.median(self.speeds)

    @functools.cached_property
    def spread(self) -> str | None:
        """The slowest and fastest run, where there are several."""
        return f"{min(self.speeds):,.0f}-{max(self.speeds):,.0f}" if self.runs > 1 else None

    @functools.cached_property
    def train_basis(self) -> str:
        """'overall' when some run had no steady-state window: its speed includes warm-up."""
        return "overall" if any(r.train_basis == "overall" for r in self.rows) else "steady"

    @functools.cached_property
    def noisy(self) -> str | None:
        """How many of its runs were timed on a busy machine."""
        n = sum(1 for r in self.rows if r.noisy)
        return f"{n} of {self.runs} runs" if n else None

    @functools.cached_property
    def test_acc(self) -> float | None:
        return median(r.test_acc for r in self.rows)

    @functools.cached_property
    def speedup(self) -> float | None:
        return median(r.speedup for r in self.rows)

    @functools.cached_property
    def samples_per_joule(self) -> float | None:
        return median(r.samples_per_joule for r in self.rows)

    @functools.cached_property
    def mfu(self) -> float | None:
        return median(r.mfu for r in self.rows)

    @functools.cached_property
    def mfu_measured(self) -> bool:
        return any(r.mfu_measured for r in self.rows)

    # what a result costs (--price) and the energy it takes, where known: the median of the runs that have one
    @functools.cached_property
    def usd_per_million_samples(self) -> float | None:
        return median(r.usd_per_million_samples for r in self.rows)

    @functools.cached_property
    def usd_to_97(self) -> float | None:
        return median(r.usd_to_97 for r in self.rows)

    @functools.cached_property
    def usd_to_99(self) -> float | None:
        return median(r.usd_to_99 for r in self.rows)

    @functools.cached_property
    def kwh_per_million_samples(self) -> float | None:
        return median(r.kwh_per_million_samples for r in self.rows)

    def label(self, parts: Sequence[str]) -> str:
        """The setup's name in a plot: its hardware, and the other ``parts`` (execution, precision, batch, epochs)
        that vary."""
        words = [self.hardware]
        if "execution" in parts:
            words.append(str(self.execution))
        if "precision" in parts:
            words.append(f"prec {self.precision}")
        if "batch_size" in parts:
            words.append(f"bs {self.batch_size}")
        if "epochs" in parts:
            words.append(epochs_words(self.epochs))
        return ", ".join(words) + (f" (n={self.runs})" if self.runs > 1 else "")


def epochs_words(epochs: int | None) -> str:
    return f"{epochs} epoch{'' if epochs == 1 else 's'}"


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def group_setups(rows: Iterable[Row]) -> list[Setup]:
    """The timed (ok) rows by setup, sorted by network, hardware, execution, precision, batch size and epochs."""
    setups: dict[SetupKey, Setup] = {}
    for r in rows:
        if r.timed:
            key = (r.arch, r.hardware, r.execution, r.precision, r.batch_size, r.epochs)
            if (setup := setups.get(key)) is None:
                setup = setups[key] = Setup(*key)
            setup.rows.append(r)
    return sorted(setups.values(), key=lambda s: (s.arch, s.hardware, s.execution or "", s.precision or "",
                                                  s.batch_size or 0, s.epochs or 0))  # fmt: skip


def varying(setups: Sequence[Setup]) -> list[str]:
    """The label parts beyond the hardware that tell these setups apart."""
    return [k for k in ("execution", "precision", "batch_size", "epochs") if len({getattr(s, k) for s in setups}) > 1]


def most_runs(setups: Sequence[Setup], limit: int) -> list[Setup]:
    """At most ``limit`` setups, those with the most runs, in their original order."""
    if len(setups) <= limit:
        return list(setups)
    kept = {id(s) for s in sorted(setups, key=lambda s: -s.runs)[:limit]}
    return [s for s in setups if id(s) in kept]
