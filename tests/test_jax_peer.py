"""benchmarks/jax_peer.py runs end to end at tiny size, with and without JAX (never timed in a test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "jax_peer.py"
TINY = ["--device", "cpu", "--repeats", "1", "--epochs", "2", "device.threads=1", "data.train_limit=1000"]


def run(*args: str, data_root: str, cwd: Path, hide: str = "") -> subprocess.CompletedProcess:
    """The script as `python benchmarks/jax_peer.py ARGS`; ``hide``: a module to present as not installed."""
    code = (
        f"import runpy, sys; sys.path.insert(0, {str(SCRIPT.parent)!r}); "
        f"{f'sys.modules[{hide!r}] = None; ' if hide else ''}"
        f"sys.argv = ['jax_peer.py', *{list(args)!r}]; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    )
    env = {**os.environ, "HWBENCH_DATA": data_root}
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def rows(stdout: str) -> list[dict]:
    (line,) = [line for line in stdout.splitlines() if line.startswith('{"jax_peer"')]
    return json.loads(line)["jax_peer"]


def test_without_jax_the_jax_column_is_skipped_in_one_line(data_root: str, tmp_path: Path) -> None:
    result = run("--arch", "ffnn", *TINY, data_root=data_root, cwd=tmp_path, hide="jax")
    skips = [line for line in result.stdout.splitlines() if "skipping the JAX column" in line]
    assert len(skips) == 1 and "pip install -e '.[peers]'" in skips[0]
    (row,) = rows(result.stdout)
    assert row["arch"] == "ffnn" and row["hwbench_samples_per_sec"] > 0 and "jax_samples_per_sec" not in row


def test_hwbench_and_jax_train_the_same_images(data_root: str, tmp_path: Path) -> None:
    pytest.importorskip("jax", reason="the [peers] extra is not installed")
    result = run(*TINY, data_root=data_root, cwd=tmp_path)
    ffnn, cnn = rows(result.stdout)
    for row in (ffnn, cnn):
        assert row["train_images"] == 1000 and len(row["jax_all"]) == len(row["hwbench_all"]) == 1
        assert row["jax_samples_per_sec"] > 0 and row["jax_device"]
        assert row["hwbench_vs_jax"] == pytest.approx(row["hwbench_samples_per_sec"] / row["jax_samples_per_sec"])
    assert "hwbench/JAX" in result.stdout
