"""The range checks (hwbench/job/config.py ``check``): values a type lets through are refused before training, in
the one line a user sees, naming the fix."""

from __future__ import annotations

import pytest

from hwbench.commands import command
from hwbench.errors import ConfigError
from hwbench.job.config import check


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lr=nan", "lr must be a positive, finite number, got nan: set e.g. lr=0.01"),
        ("lr=inf", "lr must be a positive, finite number, got inf: set e.g. lr=0.01"),
        ("lr=0", "lr must be a positive, finite number, got 0.0: set e.g. lr=0.01"),
        ("seed=-1", "seed must be between 0 and 4294967295, got -1: set e.g. seed=0"),
        ("seed=4294967296", "seed must be between 0 and 4294967295, got 4294967296: set e.g. seed=0"),
        ("data.seed=-5", "data.seed must be between 0 and 4294967295, got -5: set e.g. data.seed=0"),
        ("optim.optimizer.momentum=inf", "optim.optimizer.momentum must be a finite number, got inf: give it a "
         "finite value (python -m hwbench --cfg job shows the config)"),
        ("arch.net.dropout=1.5", "arch.net.dropout must be between 0 and 1, got 1.5: set e.g. arch.net.dropout=0.5"),
    ],
)  # fmt: skip
def test_a_value_out_of_range_is_refused_with_its_fix(make_cfg, override: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        check(make_cfg(override))
    assert str(refused.value) == message.replace("python -m hwbench", command("hwbench"))  # as this shell runs it


@pytest.mark.parametrize("overrides", [(), ("arch=cnn",), ("arch=speedrun",), ("seed=4294967295", "lr=1e-5")])
def test_the_shipped_configs_and_the_range_edges_pass(make_cfg, overrides: tuple[str, ...]) -> None:
    check(make_cfg(*overrides))
