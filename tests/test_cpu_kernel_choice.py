"""The CPU kernel choice: it takes the fastest measured candidate (torch's on a tie), a forced setting wins, a choice
is kept per CPU and setting (not one measured on a busy machine), it leaves no trace in training, and the record
names it. No test asserts a duration: the candidates' speeds are made unequal on purpose (a fake clock, or a kernel
made slow by a sleep)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hwbench.model.cpu_kernels.autotune as autotune
import hwbench.model.cpu_kernels.layers
from hwbench.execution import Compiled
from hwbench.job.runner import run
from hwbench.model.cpu_kernels.autotune import choose_kernels, fastest_or_torch, kernel_layers, time_rounds
from hwbench.model.paper import CNN, FFNN, init_weights
from hwbench.record.results import read_record

AUTO = {"linear": "auto", "conv2d": "auto", "dropout": "auto"}
BATCH = (torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,)))


class FakeClock:
    """A clock that only candidates move: each call of a candidate adds its cost."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def candidate(self, costs: list[float], calls: list[str], name: str) -> Callable[[], None]:
        def run() -> None:
            self.now += costs[len([c for c in calls if c == name]) % len(costs)]
            calls.append(name)

        return run


def medians(rounds: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(times) for name, times in rounds.items()}


def test_time_rounds_times_each_candidate_in_alternated_rounds() -> None:
    clock, calls = FakeClock(), []
    costs = {"a": [0.010, 0.010, 0.500, 0.010, 0.010, 0.010], "b": [0.008]}  # a: one disturbed call
    candidates = {name: clock.candidate(cost, calls, name) for name, cost in costs.items()}
    ms = medians(time_rounds(candidates, rounds=5, block_seconds=0.0, clock=clock))
    assert ms == pytest.approx({"a": 10.0, "b": 8.0})  # the median leaves the disturbed round out
    assert calls[:2] == ["a", "b"]  # one untimed call each, then rounds in alternating order
    assert calls[2:] == ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"]


def test_time_rounds_times_blocks_of_at_least_block_seconds() -> None:
    clock, calls = FakeClock(), []
    rounds = time_rounds({"a": clock.candidate([0.004], calls, "a")}, rounds=3, block_seconds=0.02, clock=clock)
    assert medians(rounds) == pytest.approx({"a": 4.0}) and len(calls) == 1 + 3 * 5


def test_a_lead_within_the_rounds_spread_takes_torchs_own_kernel() -> None:
    close = {"torch": [10.0, 10.6, 10.2, 10.9, 10.4], "onednn": [9.9, 10.5, 10.1, 10.8, 10.3]}  # 0.1 ms ahead
    assert fastest_or_torch(close) == ("torch", True)
    clear = {"torch": [10.0, 10.6, 10.2, 10.9, 10.4], "onednn": [7.9, 8.5, 8.1, 8.8, 8.3]}
    assert fastest_or_torch(clear) == ("onednn", False)
    assert fastest_or_torch({"torch": [8.0] * 5, "onednn": [9.0] * 5}) == ("torch", False)


def slow(fn: Callable, seconds: float = 0.1) -> Callable:
    """``fn``, made deterministically slower: a candidate that must lose."""

    def run(*args, **kwargs):
        time.sleep(seconds)
        return fn(*args, **kwargs)

    return run


@pytest.mark.parametrize("slow_kernel", ["torch", "onednn"])
def test_auto_takes_the_faster_of_the_measured_candidates(monkeypatch: pytest.MonkeyPatch, slow_kernel: str) -> None:
    if slow_kernel == "torch":
        monkeypatch.setattr(F, "linear", slow(F.linear))  # nn.Linear's forward
    else:
        monkeypatch.setattr(
            hwbench.model.cpu_kernels.layers, "onednn_linear", slow(hwbench.model.cpu_kernels.layers.onednn_linear)
        )
    net = FFNN()
    part = choose_kernels(net, *BATCH, AUTO)
    linear = part.layers["linear"]
    fast = "onednn" if slow_kernel == "torch" else "torch"
    assert (linear.kernel, linear.how) == (fast, "measured")
    assert (
        set(linear.ms_per_step) == {"torch", "onednn"} and min(linear.ms_per_step, key=linear.ms_per_step.get) == fast
    )
    assert all(layer.kernel == fast for layer in kernel_layers(net)["linear"])  # the net runs what was chosen
    assert list(part.layers) == ["linear"]  # the paper's FFNN has no dropout layer


def test_a_forced_kernel_wins_over_a_faster_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        hwbench.model.cpu_kernels.layers, "onednn_linear", slow(hwbench.model.cpu_kernels.layers.onednn_linear)
    )
    net = FFNN()
    part = choose_kernels(net, *BATCH, {**AUTO, "linear": "onednn"})
    assert part.layers["linear"].model_dump() == {"kernel": "onednn", "how": "forced", "ms_per_step": {}}
    assert all(layer.kernel == "onednn" for layer in kernel_layers(net)["linear"])


def test_every_kind_of_the_cnn_is_chosen_and_the_choice_is_kept_per_shapes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path))
    settings = {"linear": "torch", "conv2d": "auto", "dropout": "auto"}
    first = choose_kernels(CNN(), *BATCH, settings, rounds=1, kept=True)
    assert list(first.layers) == ["conv2d", "dropout", "linear"]  # the convolutions' layout first
    assert {first.layers[k].how for k in ("conv2d", "dropout")} <= {"measured", "tie"} and not first.cached
    if first.noise:
        pytest.skip(f"the choice was timed on a busy machine and rightly not kept: {first.noise}")
    assert len(list(tmp_path.glob("cpu-kernels-*.json"))) == 1
    monkeypatch.setattr(autotune, "time_rounds", lambda *a, **k: pytest.fail("measured again"))
    another = CNN()
    again = choose_kernels(another, *BATCH, settings, kept=True)
    assert again.cached and again.seconds == 0 and again.layers == first.layers
    assert again.measured_at == first.measured_at
    assert {layer.kind: layer.kernel for layers in kernel_layers(another).values() for layer in layers} == first.chosen
    with pytest.raises(pytest.fail.Exception, match="measured again"):  # another batch size: measured anew
        choose_kernels(CNN(), BATCH[0][:16], BATCH[1][:16], settings, kept=True)


@pytest.mark.quiet
def test_a_choice_timed_while_other_load_took_the_cores_is_flagged_and_not_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path))
    spin = [sys.executable, "-c", "while True: pass"]
    busy = [subprocess.Popen(spin) for _ in range(3 * torch.get_num_threads())]  # each thread's core shared 4 ways
    try:
        time.sleep(0.5)
        part = choose_kernels(FFNN(), *BATCH, AUTO, kept=True)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    assert part.noise and "other load took the rest" in part.noise[0]
    assert not list(tmp_path.glob("cpu-kernels-*.json"))  # not kept: the next job measures again


def test_choosing_leaves_weights_gradients_and_the_random_stream_as_they_were() -> None:
    torch.manual_seed(0)
    net = init_weights(CNN(), "keras")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    choose_kernels(net.eval(), *BATCH, {**AUTO, "linear": "torch"}, rounds=1)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters()) and not net.training
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_compiled_net_runs_torchs_kernels_unmeasured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autotune, "time_rounds", lambda *a, **k: pytest.fail("measured a compiled net"))
    net = Compiled("default").build_net(CNN())
    part = choose_kernels(net, *BATCH, {**AUTO, "linear": "onednn"})
    assert {c.how for c in part.layers.values()} == {"compiled"} and set(part.chosen.values()) == {"torch"}


def test_a_net_without_kernel_layers_has_no_choice() -> None:
    assert choose_kernels(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), *BATCH, AUTO) is None


def test_the_record_names_the_choice_and_the_second_cnn_job_keeps_the_firsts(
    hwbench_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path / "cache"))  # measured by this sweep's first job
    result = hwbench_cli("-m", "arch=cnn", "device=cpu", "epochs=1", "data.train_limit=512", "data.val_size=0",
                         "device.cpu_kernels.linear=onednn", "seed=0,1", "measure=minimal")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    paths = sorted((tmp_path / "outputs").rglob("results.json"), key=lambda p: int(p.parent.name.split("_")[0]))
    first, second = (read_record(p) for p in paths)  # in the sweep's order
    for record in (first, second):
        linear = record.cpu_kernels.layers["linear"]
        assert record.fingerprint.cpu_isa and "cpu_kernels" not in record.fingerprint.model_dump()  # in one place
        assert (linear.kernel, linear.how, linear.ms_per_step) == ("onednn", "forced", {})  # forced wins
    conv = first.cpu_kernels.layers["conv2d"]
    assert conv.how in ("measured", "tie") and set(conv.ms_per_step) == {"torch", "channels_last"}
    assert not first.cpu_kernels.cached and first.cpu_kernels.seconds > 0
    if first.cpu_kernels.noise:
        pytest.skip(
            f"the first job's choice was timed on a busy machine and rightly not kept: {first.cpu_kernels.noise}"
        )
    assert second.cpu_kernels.cached and second.cpu_kernels.seconds == 0
    assert second.cpu_kernels.layers == first.cpu_kernels.layers and second.cpu_kernels.measured_at
    assert "cpu kernels: " in result.stdout + result.stderr and "[kept from " in result.stdout + result.stderr


def test_a_bad_kernel_name_gets_one_line_naming_the_choices(make_cfg, tmp_path: Path) -> None:
    """The job in this process: its record's summary is python -m hwbench's last line after "error: ", exit 1 (end
    to end in test_config_refusals.py)."""
    record = run(make_cfg("device.cpu_kernels.linear=mkl"), tmp_path)
    assert record.status == "failed" and record.training is None and record.traceback is None
    assert "device.cpu_kernels.linear must be one of auto, torch, onednn, got 'mkl'" in record.summary()
