"""``repeats=N``: every sweep point runs N times, interleaved (point 1, point 2, ..., point 1 again, ...), so that a
slow phase of the machine falls on every setup alike.

Hydra's basic sweeper takes the product of the sweep's overrides in the order they are given, the first varying
slowest: ``repeat=range(1,N+1)`` put before the user's overrides makes the repeat the outer loop. Every launcher
(one after another, submitit, SLURM) gets the jobs in that order, and each job's own overrides say its repeat.
"""

from __future__ import annotations

import re

from hwbench.commands import command
from hwbench.errors import ConfigError

REPEATS = re.compile(r"^repeats=(.*)$")
MULTIRUN_FLAGS = ("-m", "--multirun")


def is_override(arg: str) -> bool:
    return "=" in arg and not arg.startswith("-")


def interleaved(argv: list[str]) -> list[str]:
    """``argv`` with ``repeat=range(1,N+1)`` before the first override where a sweep asks for ``repeats=N`` (N > 1);
    raises ConfigError for a repeats that is no count, a repeat set by hand, or repeats without a sweep."""
    given = [m.group(1) for arg in argv if (m := REPEATS.match(arg))]
    if any(arg.lstrip("+~").startswith("repeat=") for arg in argv):
        raise ConfigError("repeat is set by the sweep, one value per job: give repeats=N (with -m) instead")
    if not given:
        return argv
    value = given[-1]
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"repeats={value} must be one whole number, at least 1: e.g. repeats=5")
    count = int(value)
    if count == 1:
        return argv
    if not any(arg in MULTIRUN_FLAGS for arg in argv):
        raise ConfigError(f"repeats={count} runs each point of a sweep {count} times: add -m, e.g. "
                          f"{command('hwbench')} -m arch=ffnn repeats={count}")  # fmt: skip
    first = next(i for i, arg in enumerate(argv) if is_override(arg))
    return [*argv[:first], f"repeat=range(1,{count + 1})", *argv[first:]]
