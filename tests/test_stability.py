"""The steady window's sub-windows: where they end, and what they make of the clock's marks."""

from __future__ import annotations

import pytest

from hwbench.measure.stability import edges, group_plan, stability, windows_per_epoch
from hwbench.measure.training_clock import Mark


@pytest.mark.parametrize(
    ("start", "end", "windows", "group", "expected"),
    [(0, 24, 5, 5, [5, 10, 15, 20]),  # 3,000 images: groups of 5, 5, 5, 5, 4
     (0, 79, 3, 27, [27, 54]),  # groups of 27, 27, 25: no window of a step or two
     (0, 430, 2, 64, [192]),  # MNIST's epoch in the usual groups of 64: the end nearest its half
     (64, 430, 5, 64, [128, 192, 256, 384]),  # the only epoch, after warm-up: nearest ends, each once
     (0, 3, 5, 1, [1, 2])],  # fewer steps than windows: as many as there are
)  # fmt: skip
def test_windows_end_at_the_lightning_step_nearest_their_share(start, end, windows, group, expected) -> None:
    assert edges(start, end, windows, group) == expected


def test_five_windows_whatever_the_epochs() -> None:
    assert [windows_per_epoch(e) for e in (1, 2, 3, 5, 6, 20)] == [5, 5, 3, 2, 1, 1]
    assert group_plan(1, 50) == (5, 50) and group_plan(4, 50) == (2, 0)  # warm-up: the only epoch's first steps


def test_the_spread_of_the_windows_rates() -> None:
    marks = [Mark(1.0 + k, 10 * k, 1000 * k) for k in range(5)] + [Mark(5.5, 50, 5000)]  # 1,000/s, then 2,000/s
    part = stability(marks, world_size=2)
    assert part.window_rates == [2000.0] * 4 + [4000.0] and part.window_steps == [10] * 5
    assert part.median == 2000.0 and part.iqr == 0.0 and part.unsteady is None
    samples = [0, 100, 400, 500, 800, 900]  # 100, 300, 100, 300, 100 samples/s
    wandering = stability([Mark(float(k), k, n) for k, n in enumerate(samples)], world_size=1)
    assert wandering.iqr_over_median > 0.1 and wandering.unsteady.startswith("its own speed wandered: IQR/median")
    assert stability(marks[:2], 1) == "1 steady window(s): too few optimizer steps after warm-up to time the run " \
                                      "in 5 windows (raise data.train_limit or epochs)"  # fmt: skip
