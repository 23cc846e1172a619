"""benchmarks/keras_peer.py runs end to end at tiny size, with and without TensorFlow (never timed in a test): hwbench,
the hand loop, the stock torch loop and Keras, on the CPU its table names; and conv_kernels.py, the CNN's convolutions
alone in torch and TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, peer_rows
from hwbench.record.fingerprint import cpu_description

TINY = ["--repeats", "1", "--epochs", "2", "device.threads=1", "data.train_limit=1000", "measure=minimal"]


def test_without_tensorflow_the_keras_column_is_skipped_in_one_line(peer_script) -> None:
    result = peer_script("keras_peer.py", "--arch", "ffnn", *TINY, hide="tensorflow")
    skips = [line for line in result.stdout.splitlines() if "skipping the Keras column" in line]
    assert len(skips) == 1 and "pip install -e '.[peers]'" in skips[0]
    (row,) = peer_rows(result.stdout, "keras_peer")
    assert row["arch"] == "ffnn" and row["hwbench_samples_per_sec"] > 0 and row["hand_loop_samples_per_sec"] > 0
    assert row["stock_loop_samples_per_sec"] > 0  # the stock torch loop needs no TensorFlow
    assert "keras_samples_per_sec" not in row


def test_all_three_paths_report_their_fields(peer_script) -> None:
    pytest.importorskip("tensorflow", reason="the [peers] extra is not installed")
    pytest.importorskip("keras")
    result = peer_script("keras_peer.py", *TINY)
    ffnn, cnn = peer_rows(result.stdout, "keras_peer")
    assert (ffnn["arch"], cnn["arch"]) == ("ffnn", "cnn")
    for row in (ffnn, cnn):
        assert row["threads"] == 1 and row["train_images"] == 1000 and row["repeats"] == 1
        assert len(row["keras_all"]) == len(row["hwbench_all"]) == len(row["hand_loop_all"]) == 1
        assert row["hwbench_vs_stock_loop"] == pytest.approx(row["hwbench_all"][0] / row["stock_loop_all"][0])
        assert row["cpu"] == cpu_description() and "linear" in row["cpu_kernels"][0]
        assert row["keras_samples_per_sec"] > 0 and isinstance(row["keras_jit_compile"], bool)
        assert row["hwbench_vs_keras"] == pytest.approx(row["hwbench_samples_per_sec"] / row["keras_samples_per_sec"])
        assert row["keras"].startswith("3.")
    assert cnn["cpu_kernels"][0].keys() == {"conv2d", "dropout", "linear"}
    assert "hwbench/Keras" in result.stdout and "hwbench/stock" in result.stdout  # the table
    assert cpu_description() in " ".join(result.stdout.split())  # its title names the CPU (wrapped or not)


def test_conv_kernels_times_both_frameworks_each_in_its_own_process(peer_script) -> None:
    pytest.importorskip("tensorflow", reason="the [peers] extra is not installed")
    result = peer_script("conv_kernels.py", "--repeats", "2", "--steps", "2", "--threads", "1")
    (row,) = peer_rows(result.stdout, "conv_kernels")
    assert len(row["torch_ms"]) == len(row["tf_ms"]) == 2 and min(row["torch_ms"] + row["tf_ms"]) > 0
    pairs = [t / f for t, f in zip(row["torch_ms"], row["tf_ms"], strict=True)]
    assert row["torch_vs_tf_pairs"] == pytest.approx(pairs) and row["torch_vs_tf"] == pytest.approx(sum(pairs) / 2)
    assert row["cpu"] == cpu_description() and row["cpu"] in result.stdout and row["threads"] == 1


def test_conv_kernels_without_tensorflow_says_what_to_install(tmp_path) -> None:
    script = REPO / "benchmarks" / "conv_kernels.py"
    hidden = f"sys.modules['tensorflow'] = None; sys.argv = ['c']; runpy.run_path({str(script)!r}, run_name='__main__')"
    cmd = [sys.executable, "-c", f"import runpy, sys; {hidden}"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: TensorFlow is not installed: pip install -e '.[peers]'"
