"""Runs grouped by setup (source, network, hardware, execution, precision, batch size, epochs): what a comparison
claims. The source is the folder argument a run was found under: two folders given apart stay apart, even where
their machines report the same hardware (``--merge-sources`` groups them by hardware alone).

A setup's figure is the median of the runs that count (ok, timed on a quiet machine, steady within the run), with a
95% bootstrap interval of that median; noisy and unsteady runs are listed with it, never aggregated. Speed-ups are
between setups (hwbench.compare.verdicts), never between single runs.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hwbench.compare.bootstrap import Interval, percentile_interval, resampled_medians
from hwbench.compare.rows import Row
from hwbench.compare.scaling import world

SetupKey = tuple[str, str, str | None, str | None, int | None, int | None, str | None]
MIN_RUNS = 3  # runs that count, each side, before an interval or a verdict is claimed


@dataclass(eq=False)
class Setup:
    arch: str
    hardware: str
    execution: str | None  # eager, compiled, graph, fused: the same math run another way is another setup
    precision: str | None
    batch_size: int | None
    epochs: int | None  # runs of other lengths have other steady-state windows: another setup
    source: str | None = None  # the folder its runs were found under; None: sources merged
    rows: list[Row] = field(default_factory=list)  # the runs that count
    excluded: list[Row] = field(default_factory=list)  # noisy or unsteady: listed, never aggregated
    # against the baseline setup of its network and epochs (hwbench.compare.verdicts.add_verdicts)
    baseline: Setup | None = None
    speedup: float | None = None
    speedup_ci: Interval | None = None
    verdict: str | None = None
    p_value: float | None = None

    @property
    def key(self) -> SetupKey:
        return (self.arch, self.hardware, self.execution, self.precision, self.batch_size, self.epochs, self.source)

    @property
    def scale(self) -> tuple[int, int]:
        """Its devices, then its CPU threads: the smallest setup of a scaling sweep is its natural baseline."""
        first = (self.rows or self.excluded)[0]
        return world(first), first.threads or 0

    @property
    def machine(self) -> tuple[str | None, str | None, str | None]:
        """Where it ran: setups that share this differ only in how much of the machine they used."""
        first = (self.rows or self.excluded)[0]
        return self.source, first.host, first.model

    @property
    def runs(self) -> int:
        return len(self.rows)

    # the figures below are read by every table column and plot: computed once, when first read
    @functools.cached_property
    def speeds(self) -> list[float]:
        return [r.train_samples_per_sec for r in self.rows]  # type: ignore[misc]

    @functools.cached_property
    def train_samples_per_sec(self) -> float | None:
        return statistics.median(self.speeds) if self.speeds else None

    @functools.cached_property
    def resampled(self) -> np.ndarray | None:
        """The bootstrap's medians (seeded by the setup and its speeds), where enough runs count."""
        return resampled_medians(self.speeds, repr(self.key)) if self.runs >= MIN_RUNS else None

    @functools.cached_property
    def interval(self) -> Interval | None:
        return percentile_interval(self.resampled) if self.resampled is not None else None

    @property
    def ci_low(self) -> float | None:
        return self.interval.low if self.interval else None

    @property
    def ci_high(self) -> float | None:
        return self.interval.high if self.interval else None

    @property
    def median_samples_per_sec(self) -> float | None:
        return self.train_samples_per_sec

    @property
    def ci(self) -> str | None:
        """The median's interval as the console shows it."""
        return f"{self.interval.low:,.0f}-{self.interval.high:,.0f}" if self.interval else None

    @property
    def speedup_interval(self) -> str | None:
        ci = self.speedup_ci
        return f"{ci.low:.2f}-{ci.high:.2f}x" if ci else None

    @property
    def baseline_setup(self) -> str | None:
        """The baseline setup's name, for setups.csv."""
        return self.baseline.name(("execution", "precision", "batch_size", "epochs")) if self.baseline else None

    @property
    def speedup_ci_low(self) -> float | None:
        return self.speedup_ci.low if self.speedup_ci else None

    @property
    def speedup_ci_high(self) -> float | None:
        return self.speedup_ci.high if self.speedup_ci else None

    @functools.cached_property
    def iqr_over_median(self) -> float | None:
        """The spread of its runs: interquartile range over the median (torch.utils.benchmark's measure)."""
        if self.runs < 2 or not self.train_samples_per_sec:
            return None
        q1, _, q3 = statistics.quantiles(self.speeds, n=4, method="inclusive")
        return (q3 - q1) / self.train_samples_per_sec

    @functools.cached_property
    def spread(self) -> str | None:
        """The slowest and fastest run that count, where there are several."""
        return f"{min(self.speeds):,.0f}-{max(self.speeds):,.0f}" if self.runs > 1 else None

    @functools.cached_property
    def train_basis(self) -> str:
        """'overall' when some run had no steady-state window: its speed includes warm-up."""
        return "overall" if any(r.train_basis == "overall" for r in self.rows) else "steady"

    @functools.cached_property
    def left_out(self) -> str | None:
        """How many runs were left out of its figures, and why: '2 noisy, 1 unsteady'."""
        noisy = sum(1 for r in self.excluded if r.noisy)
        unsteady = sum(1 for r in self.excluded if r.unsteady and not r.noisy)
        words = [f"{noisy} noisy"] * bool(noisy) + [f"{unsteady} unsteady"] * bool(unsteady)
        return ", ".join(words) or None

    @functools.cached_property
    def test_acc(self) -> float | None:
        return median(r.test_acc for r in self.rows)

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

    def name(self, parts: Sequence[str]) -> str:
        """The setup in words: its hardware, and the other ``parts`` (execution, precision, batch, epochs) that
        tell it from the setups beside it."""
        words = [self.hardware]
        if "source" in parts and self.source:
            words[0] = f"{self.source}: {self.hardware}"
        if "execution" in parts:
            words.append(str(self.execution))
        if "precision" in parts:
            words.append(f"prec {self.precision}")
        if "batch_size" in parts:
            words.append(f"bs {self.batch_size}")
        if "epochs" in parts:
            words.append(epochs_words(self.epochs))
        return ", ".join(words)

    def label(self, parts: Sequence[str]) -> str:
        """The setup's name in a plot, with its number of runs."""
        return self.name(parts) + (f" (n={self.runs})" if self.runs > 1 else "")


def epochs_words(epochs: int | None) -> str:
    return f"{epochs} epoch{'' if epochs == 1 else 's'}"


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def group_setups(rows: Iterable[Row], by_source: bool = True) -> list[Setup]:
    """The timed (ok) rows by setup, sorted by network, source, hardware, execution, precision, batch size and
    epochs; each run counts in its setup's figures or is left out of them (noisy, unsteady). ``by_source``: False
    groups the runs of every folder by their hardware alone (the nodes of one cluster, copied apart)."""
    setups: dict[SetupKey, Setup] = {}
    for r in rows:
        if r.timed:
            source = r.source if by_source else None
            key = (r.arch, r.hardware, r.execution, r.precision, r.batch_size, r.epochs, source)
            if (setup := setups.get(key)) is None:
                setup = setups[key] = Setup(*key)
            (setup.excluded if r.noisy or r.unsteady else setup.rows).append(r)
    return sorted(setups.values(), key=lambda s: (s.arch, s.source or "", s.hardware, s.execution or "",
                                                  s.precision or "", s.batch_size or 0, s.epochs or 0))  # fmt: skip


def varying(setups: Sequence[Setup]) -> list[str]:
    """The label parts beyond the hardware that tell these setups apart (the source first: where they came from)."""
    parts = ("source", "execution", "precision", "batch_size", "epochs")
    return [k for k in parts if len({getattr(s, k) for s in setups}) > 1]


def most_runs(setups: Sequence[Setup], limit: int) -> list[Setup]:
    """At most ``limit`` setups, those with the most runs, in their original order."""
    if len(setups) <= limit:
        return list(setups)
    kept = {id(s) for s in sorted(setups, key=lambda s: -s.runs)[:limit]}
    return [s for s in setups if id(s) in kept]
