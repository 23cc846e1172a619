"""Speed-ups between setups with their intervals, and a verdict on each, as criterion.rs reports a change.

A setup's speed-up is its median over the baseline setup's median (that of ``--baseline``, else the smallest setup
of a threads or devices sweep on one machine, else the slowest setup of the same network and epochs), with a 95%
percentile-bootstrap interval of that ratio. ``faster`` or ``slower`` only when the whole interval lies beyond the
noise threshold (so it excludes 1 too); ``no clear difference`` otherwise; ``too few runs`` when either side has
fewer than ``MIN_RUNS`` runs that count (then no interval is claimed). Mann-Whitney's p-value is given beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

from hwbench.compare.bootstrap import mann_whitney_p, ratio_interval
from hwbench.compare.rows import Row
from hwbench.compare.setups import MIN_RUNS, Setup, epochs_words, varying

NOISE_THRESHOLD = 0.02  # a change within 2% is never a verdict (criterion.rs' default)
BASELINE, FASTER, SLOWER, UNCLEAR, TOO_FEW = "baseline", "faster", "slower", "no clear difference", "too few runs"

Group = tuple[str, int | None]  # network and epochs: the setups a speed-up compares


def names(row: Row, spec: str) -> bool:
    """``spec`` is the run's source folder as given, or part of source:host/device/run_name or of its path."""
    return spec.rstrip("/") == row.source or spec in row.label or spec in row.path


def add_verdicts(setups: Sequence[Setup], baseline: str | None) -> dict[Group, Setup]:
    """Set each setup's speed-up, interval and verdict against its group's baseline; return the baselines.

    Raises ValueError when ``baseline`` names no run that counts, or runs of more than one setup of a group."""
    groups: dict[Group, list[Setup]] = {}
    for s in setups:
        if s.runs:
            groups.setdefault((s.arch, s.epochs), []).append(s)
    if baseline is not None:
        check_named(setups, baseline)
    bases: dict[Group, Setup] = {}
    for (arch, epochs), group in groups.items():
        if len(group) < 2:
            continue
        base = bases[arch, epochs] = baseline_of(group, baseline, arch, epochs)
        for s in group:
            judge(s, base)
    return bases


def check_named(setups: Sequence[Setup], spec: str) -> None:
    if any(names(r, spec) for s in setups for r in s.rows):
        return
    if any(names(r, spec) for s in setups for r in s.excluded):
        raise ValueError(f"--baseline {spec!r} names only noisy or unsteady runs (the machine was busy, or the run's "
                         f"own speed wandered, while they were timed): such a run is never a baseline")  # fmt: skip
    hint = "give a folder given to compare, or part of host/device/run_name or of a results.json path"
    raise ValueError(f"--baseline {spec!r} names no ok run: {hint}")


def baseline_of(group: list[Setup], spec: str | None, arch: str, epochs: int | None) -> Setup:
    """The setup ``spec`` names in this group; else, for a sweep of threads or devices on one machine, its smallest
    (a speed-up is then what the extra threads or devices bought); else its slowest."""
    matches = [s for s in group if spec is not None and any(names(r, spec) for r in s.rows)]
    if len(matches) > 1:
        listed = "; ".join(s.name(varying(group)) for s in matches[:5])
        raise ValueError(f"--baseline {spec!r} matches runs of {len(matches)} {arch} setups of {epochs_words(epochs)} "
                         f"({listed}): name one setup's runs")  # fmt: skip
    if matches:
        return matches[0]
    if len({s.machine for s in group}) == 1 and len({s.scale for s in group}) == len(group):
        return min(group, key=lambda s: s.scale)
    return min(group, key=lambda s: s.train_samples_per_sec)  # type: ignore[arg-type,return-value]


def judge(setup: Setup, base: Setup) -> None:
    setup.baseline = base
    setup.speedup = setup.train_samples_per_sec / base.train_samples_per_sec  # type: ignore[operator]
    if setup is base:
        setup.verdict = BASELINE
        return
    if setup.resampled is None or base.resampled is None:
        setup.verdict = TOO_FEW
        return
    setup.speedup_ci = ci = ratio_interval(setup.resampled, base.resampled)
    setup.p_value = mann_whitney_p(setup.speeds, base.speeds)
    if ci.low > 1 + NOISE_THRESHOLD:
        setup.verdict = FASTER
    elif ci.high < 1 - NOISE_THRESHOLD:
        setup.verdict = SLOWER
    else:
        setup.verdict = UNCLEAR


def sentence(setup: Setup, parts: Sequence[str]) -> str | None:
    """The verdict in plain words: 'CPU-B trains the ffnn 15% faster than CPU-A (95% CI 12% to 18%, 5 runs
    each)'; None for a baseline or a setup without one."""
    base = setup.baseline
    if base is None or setup is base:
        return None
    me, them, net = setup.name(parts), base.name(parts), setup.arch
    runs = f"{setup.runs} runs each" if setup.runs == base.runs else f"{setup.runs} and {base.runs} runs"
    if setup.verdict == TOO_FEW:
        return (f"too few runs to compare {me} with {them} on the {net}: {setup.runs} and {base.runs} that count, "
                f"{MIN_RUNS} each needed (repeats={MIN_RUNS} or more)")  # fmt: skip
    ci = setup.speedup_ci
    assert ci is not None and setup.speedup is not None
    interval = f"95% CI {percent(ci.low)} to {percent(ci.high)}, {runs}"
    if setup.verdict == UNCLEAR:
        return f"no clear difference between {me} and {them} on the {net} ({percent(setup.speedup)}; {interval})"
    how = "faster" if setup.verdict == FASTER else "slower"
    return f"{me} trains the {net} {abs(setup.speedup - 1):.0%} {how} than {them} ({interval})"


def percent(ratio: float) -> str:
    """A ratio as a signed change: 1.15 -> '+15%', 0.97 -> '-3%'."""
    return f"{ratio - 1:+.0%}"


def sentences(setups: Sequence[Setup]) -> list[str]:
    """Every setup's verdict in words, network by network."""
    lines = []
    for arch in dict.fromkeys(s.arch for s in setups):
        mine = [s for s in setups if s.arch == arch]
        parts = varying(mine)
        lines += [line for s in mine if (line := sentence(s, parts))]
    return lines


def fastest_lines(setups: Sequence[Setup]) -> list[str]:
    """One line per network and epochs: its fastest setup, and the verdict against the next fastest."""
    lines = []
    groups: dict[Group, list[Setup]] = {}
    for s in setups:
        groups.setdefault((s.arch, s.epochs), []).append(s)
    for (arch, _), group in groups.items():
        ranked = sorted((s for s in group if s.runs), key=lambda s: -s.train_samples_per_sec)  # type: ignore[operator]
        if not ranked:
            lines.append(f"{arch}: no run counts (every one was noisy or unsteady): no verdict; run it again on a "
                         f"quiet machine")  # fmt: skip
            continue
        parts = varying(group)
        best = ranked[0]
        line = f"{arch}: fastest {best.name(parts)}, {best.train_samples_per_sec:,.0f} samples/s ({best.runs} runs)"
        if len(ranked) > 1:
            pair = Setup(*best.key, rows=best.rows)
            judge(pair, ranked[1])
            line += "; " + (sentence(pair, parts) or "")
        lines.append(line)
    return lines
