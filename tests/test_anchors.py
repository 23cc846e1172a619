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


def test_the_overhead_driver_alternates_fresh_processes_and_reports_every_pair(peer_script) -> None:
    args = ["--device", "cpu", "--arch", "ffnn", "--repeats", "2", "--epochs", "2"]
    result = peer_script("bench_overhead.py", *args, "device.threads=1", "data.train_limit=1000", "measure=minimal")
    (row,) = peer_rows(result.stdout, "bench_overhead")
    hw, hand = row["hwbench_all"], row["hand_loop_all"]
    assert len(hw) == len(hand) == len(row["synthetic_all"]) == 2 and row["threads"] == 1
    assert row["ratio_pairs"] == pytest.approx([a / b for a, b in zip(hw, hand, strict=True)])
    assert row["ratio_spread"] == [min(row["ratio_pairs"]), max(row["ratio_pairs"])]
    assert row["ratio"] == pytest.approx(sum(row["ratio_pairs"]) / 2)  # the median of two
    assert row["cpu"] == cpu_description() and cpu_description() in " ".join(result.stdout.split())
    assert f"{row['ratio']:.3f} ({row['ratio_spread'][0]:.2f}-{row['ratio_spread'][1]:.2f})" in result.stdout


def test_the_anchors_refuse_a_recipe_they_do_not_train(data_root: str) -> None:
    env = {**os.environ, "HWBENCH_DATA": data_root}
    cmd = [sys.executable, str(REPO / "benchmarks" / "keras_peer.py"), "--no-keras", "optim=adam_onecycle"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: the anchors train plain SGD: leave optim at sgd (lr= sets its rate)"
