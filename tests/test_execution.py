"""Execution strategies: what each refuses (one line, before anything runs), and the learning-rate table that lets
a captured graph follow a schedule. Their GPU behaviour is in test_gpu_path.py."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.optim.lr_scheduler import OneCycleLR

from hwbench.errors import ConfigError
from hwbench.execution.lr_table import LrTable, scheduled_rates
from hwbench.job.runner import run
from hwbench.record.results import read_record

TINY = ("epochs=2", "data.train_limit=1000")


def test_the_device_table_gives_every_step_the_rate_one_cycle_gives_it() -> None:
    steps = 120
    schedule = partial(OneCycleLR, max_lr=0.1, pct_start=0.25, cycle_momentum=False)
    ours = torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=0.1, momentum=0.9, nesterov=True)
    table = LrTable(scheduled_rates(ours, schedule, steps), torch.device("cpu"))
    table.attach(ours)
    reference = torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=0.1, momentum=0.9, nesterov=True)
    scheduler = schedule(reference, total_steps=steps)
    seen, expected = [], []
    for _ in range(steps):
        table.load()  # what a captured step does before the optimizer reads its rate
        assert ours.param_groups[0]["lr"] is table.lrs[0]
        seen.append(table.lrs[0].item())
        table.advance()
        expected.append(reference.param_groups[0]["lr"])  # what the eager loop's optimizer step uses
        reference.step()
        scheduler.step()
    torch.testing.assert_close(torch.tensor(seen), torch.tensor(expected), rtol=1e-6, atol=0)
    assert seen[0] == pytest.approx(0.1 / 25, rel=1e-6) and max(seen) == pytest.approx(0.1, rel=1e-6)
    table.rewind()
    assert table.step.item() == 0 and table.lrs[0].item() == pytest.approx(seen[0])


def test_a_schedule_that_also_cycles_momentum_is_refused() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    with pytest.raises(ConfigError, match=r"changes momentum per step.*cycle_momentum=false"):
        scheduled_rates(optimizer, partial(OneCycleLR, max_lr=0.1), 50)


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (("execution=graph", "device=cpu"), "execution=graph captures CUDA graphs and this job runs on cpu"),
        pytest.param(
            ("execution=fused", "optim=rmsprop", "device=gpu"),
            "execution=fused does not combine with RMSprop (no",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="a CPU runs it eager (test_cpu_fused.py)"),
        ),
        (("execution=graph", "optim=sgd_onecycle"), "execution=graph does not combine with an LR scheduler"),
        (("execution=compiled", "execution.mode=fast"), "execution.mode must be one of default, reduce-overhead"),
    ],
)
def test_a_strategy_refuses_what_it_cannot_run_in_one_line(make_cfg, tmp_path, overrides: tuple, line: str) -> None:
    """The job in this process (hwbench.job.runner.run): its record's summary is the line python -m hwbench ends
    with after "error: ", exit 1 (end to end in test_devices.py for a skipped job, test_config_refusals.py for a
    failed one)."""
    record = run(make_cfg(*overrides, *TINY), tmp_path)
    assert record.status in ("failed", "skipped") and record.training is None and record.traceback is None
    assert line in record.summary() and read_record(tmp_path / "results.json").reason == record.reason
