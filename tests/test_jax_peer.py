"""benchmarks/jax_peer.py runs end to end at tiny size, with and without JAX (never timed in a test)."""

from __future__ import annotations

import pytest

from conftest import peer_rows

TINY = ["--device", "cpu", "--repeats", "1", "--epochs", "2"]
TINY += ["device.threads=1", "data.train_limit=1000", "measure=minimal"]


def test_without_jax_the_jax_column_is_skipped_in_one_line(peer_script) -> None:
    result = peer_script("jax_peer.py", "--arch", "ffnn", *TINY, hide="jax")
    skips = [line for line in result.stdout.splitlines() if "skipping the JAX column" in line]
    assert len(skips) == 1 and "pip install -e '.[peers]'" in skips[0]
    (row,) = peer_rows(result.stdout, "jax_peer")
    assert row["arch"] == "ffnn" and row["hwbench_samples_per_sec"] > 0 and "jax_samples_per_sec" not in row


def test_hwbench_and_jax_train_the_same_images(peer_script) -> None:
    pytest.importorskip("jax", reason="the [peers] extra is not installed")
    result = peer_script("jax_peer.py", *TINY)
    ffnn, cnn = peer_rows(result.stdout, "jax_peer")
    for row in (ffnn, cnn):
        assert row["train_images"] == 1000 and len(row["jax_all"]) == len(row["hwbench_all"]) == 1
        assert row["jax_samples_per_sec"] > 0 and row["jax_device"]
        assert row["hwbench_vs_jax"] == pytest.approx(row["hwbench_samples_per_sec"] / row["jax_samples_per_sec"])
    assert "hwbench/JAX" in result.stdout
