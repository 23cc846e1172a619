"""The paper's FFNN really learns MNIST with the defaults (SGD lr 0.01, batch 128, Keras init)."""

from pathlib import Path

import pytest

from hwbench.job.runner import run


@pytest.mark.slow
def test_ffnn_one_epoch_on_all_training_images_reaches_85_percent(make_cfg, tmp_path: Path) -> None:
    record = run(make_cfg("arch=ffnn", "epochs=1", "measure=minimal"), tmp_path)  # its accuracy: nothing else measured
    assert record.config["data"]["train_limit"] is None
    assert record.metrics.test_acc >= 0.85
