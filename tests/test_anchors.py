"""The anchors run as users run them: each peer script (benchmarks/peers/) in a fresh process, started as the drivers
start it, loads neither Lightning nor hwbench (nor torch, for Keras and JAX), and trains on the images hwbench trains
on. Python's own import log (-X importtime, through PYTHONPROFILEIMPORTTIME) says what each process loaded."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from conftest import REPO, peer_rows
from hwbench.record.fingerprint import cpu_description

FRAMEWORK = ("lightning", "pytorch_lightning", "lightning_fabric", "lightning_utilities", "hwbench")


def load_anchors() -> ModuleType:
    spec = importlib.util.spec_from_file_location("anchors", REPO / "benchmarks" / "anchors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imported(stderr: str) -> set[str]:
    """The top-level packages a process imported, from Python's import-time log."""
    names = (line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:"))
    return {name.split(".")[0] for name in names if name and name != "imported package"}


@pytest.mark.parametrize(
    ("script", "args", "needs", "foreign"),
    [
        ("torch_loop.py", "loop_args", None, FRAMEWORK),
        ("hand_loop.py", "hand_loop_args", None, FRAMEWORK),
        ("keras_loop.py", "keras_args", "tensorflow", (*FRAMEWORK, "torch")),
        ("jax_loop.py", "jax_args", "jax", (*FRAMEWORK, "torch")),
    ],
)
def test_an_anchor_loads_nothing_of_hwbench_or_lightning(
    data_root: str, tmp_path: Path, monkeypatch, script: str, args: str, needs: str | None, foreign: tuple[str, ...]
) -> None:
    if needs:
        pytest.importorskip(needs, reason="the [peers] extra is not installed")
    monkeypatch.setenv("HWBENCH_DATA", data_root)
    anchors = load_anchors()
    cfg = anchors.config(["arch=ffnn", "device=cpu", "epochs=2", "data.train_limit=512", "device.threads=1"])
    arrays = anchors.write_arrays(cfg, tmp_path / "mnist_train.npz")
    command = anchors.peer_command(script, getattr(anchors, args)(cfg, arrays))  # as the drivers start it
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = imported(result.stderr)
    assert loaded & {"numpy", "torch", "tensorflow", "jax"}  # the log is read: the script's own framework is in it
    assert not loaded & set(foreign), sorted(loaded & set(foreign))
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["samples_per_sec"] > 0 and line["train_images"] == 512  # hwbench's training split, handed over


def test_the_drivers_alternate_the_paths_and_report_every_pair() -> None:
    """Every driver's rounds (anchors.alternate): each path once a round, the order reversed every other round (a
    slow phase of the machine hits every path); each back-to-back pair's ratio, their median and spread."""
    anchors, order = load_anchors(), []

    def path(name: str, speeds: list[float]):
        return lambda: order.append(name) or speeds[order.count(name) - 1]

    runs = anchors.alternate({"a": path("a", [2.0, 6.0, 3.0]), "b": path("b", [1.0, 2.0, 2.0])}, repeats=3)
    assert order == ["a", "b", "b", "a", "a", "b"] and runs == {"a": [2.0, 6.0, 3.0], "b": [1.0, 2.0, 2.0]}
    row = anchors.pairs("ratio", runs["a"], runs["b"])
    assert row == {"ratio": 2.0, "ratio_pairs": [2.0, 3.0, 1.5], "ratio_spread": [1.5, 3.0]}
    assert anchors.ratio_cell(row, "ratio") == "2.000 (1.50-3.00)"
    assert anchors.ratio_cell(anchors.pairs("ratio", [3.0], [2.0]), "ratio") == "1.500"  # one pair: no spread


def test_the_overhead_driver_runs_each_path_in_a_fresh_process_and_reports_the_pair(peer_script) -> None:
    args = ["--device", "cpu", "--arch", "ffnn", "--repeats", "1", "--epochs", "2"]
    result = peer_script("bench_overhead.py", *args, "device.threads=1", "data.train_limit=1000", "measure=minimal")
    (row,) = peer_rows(result.stdout, "bench_overhead")
    hw, hand = row["hwbench_all"], row["hand_loop_all"]
    assert len(hw) == len(hand) == len(row["synthetic_all"]) == 1 and row["threads"] == 1
    assert row["ratio_pairs"] == [row["ratio"]] == pytest.approx([hw[0] / hand[0]])
    assert row["cpu"] == cpu_description() and cpu_description() in " ".join(result.stdout.split())
    assert f"{row['ratio']:.3f}" in result.stdout


def test_the_anchors_refuse_a_recipe_they_do_not_train(data_root: str) -> None:
    env = {**os.environ, "HWBENCH_DATA": data_root}
    cmd = [sys.executable, str(REPO / "benchmarks" / "keras_peer.py"), "--no-keras", "optim=adam_onecycle"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: the anchors train plain SGD: leave optim at sgd (lr= sets its rate)"
