"""The LightningModule's numbers are the numbers: metrics as computed directly, steps as a plain loop takes them."""

from functools import partial

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from conftest import CLOCK_ONLY
from hwbench.data.datamodules import MNISTDataModule, TensorBatches
from hwbench.model.classifier import Classifier
from hwbench.model.paper import FFNN, init_weights


def fit(
    data_root: str, steps_per_execution: int, one_hot: bool = False
) -> tuple[Classifier, MNISTDataModule, L.Trainer]:
    torch.manual_seed(0)
    model = Classifier(init_weights(FFNN(), "keras"), partial(torch.optim.SGD, lr=0.05), one_hot_targets=one_hot)
    dm = MNISTDataModule(root=data_root, train_limit=2000, val_size=1000, steps_per_execution=steps_per_execution)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(model, dm)
    return model, dm, trainer


def test_grouped_steps_train_exactly_like_a_plain_loop(data_root: str) -> None:
    grouped, dm, _ = fit(data_root, steps_per_execution=8)
    torch.manual_seed(0)
    net = init_weights(FFNN(), "keras")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    batches = TensorBatches(*dm.splits["train"], batch_size=128, shuffle=True, seed=0)  # the same shuffles
    for x, y in [b for _ in range(2) for b in batches]:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    assert grouped.optimizer_steps == 2 * 16  # 2,000 images in batches of 128, for 2 epochs
    for ours, plain in zip(grouped.net.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(ours, plain, rtol=0, atol=0)


def test_epoch_metrics_equal_a_direct_computation(data_root: str) -> None:
    model, dm, trainer = fit(data_root, steps_per_execution=4)
    x, y = dm.splits["val"]
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert trainer.callback_metrics["val/acc"].item() == (logits.argmax(1) == y).float().mean().item()
    torch.testing.assert_close(trainer.callback_metrics["val/loss"], F.cross_entropy(logits, y), rtol=1e-5, atol=1e-6)


def test_keras_one_hot_targets_train_the_same_model(data_root: str) -> None:
    indices, one_hot = fit(data_root, 8)[0], fit(data_root, 8, one_hot=True)[0]
    for a, b in zip(indices.net.parameters(), one_hot.net.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_compile_time_is_kept_out_of_training_and_changes_nothing(make_cfg, tmp_path) -> None:
    from hwbench.job.runner import run

    overrides = ("arch=ffnn", "epochs=1", "data.train_limit=1000", "steps_per_execution=4", *CLOCK_ONLY)
    eager = run(make_cfg(*overrides), tmp_path / "eager")
    compiled = run(make_cfg(*overrides, "execution=compiled"), tmp_path / "compiled")
    assert eager.execution.prepare_seconds is None and compiled.execution.prepare_seconds > 0
    # the warm-up step is undone: the compiled run trains the same model, up to float reassociation
    assert abs(compiled.metrics.test_acc - eager.metrics.test_acc) < 0.01
