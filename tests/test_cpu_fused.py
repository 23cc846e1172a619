"""execution=fused on a CPU: the same SGD steps as eager (weights held to eager's after many steps, dropout off and on
with the same masks, float32 and bf16-mixed), a run it does not cover that runs eager and says so, execution=auto's
measured choice, and the quiet-machine driver at tiny size."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from conftest import peer_rows
from hwbench.execution import Auto, Eager, Execution, Fused, Stepping
from hwbench.execution.cpu_gemms import onednn_available
from hwbench.model.cpu_kernels.autotune import kernel_layers, use
from hwbench.model.paper import CNN, FFNN, init_weights
from hwbench.record.fingerprint import cpu_description
from hwbench.record.results import read_record

# float32 GEMMs summed in another order (addmm_ updates, no gradient tensor): after the steps no weight of either net
# is further than this from eager's (measured: 5e-7 for the FFNN, 3e-6 for the CNN), while the steps move every
# layer's weights by more than 10x this
TOLERANCE = 1e-5
# bf16-mixed: the same bfloat16 GEMMs as autocast's; rounding at bfloat16's 8 bits where an order differs
BF16_TOLERANCE = 2e-4


class Trainee(nn.Module):
    """What a strategy sees of hwbench's LightningModule (execution/strategy.py's Trainee): the net, plain SGD,
    cross-entropy, and every step's loss kept."""

    def __init__(self, net: nn.Module, lr: float = 0.01, momentum: float = 0.0, bf16: bool = False) -> None:
        super().__init__()  # lr: the paper's rate
        self.net, self.channels_last = net, False
        optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
        self.stepping = Stepping(optimizer=optimizer, total_steps=100, bf16=bf16, forward_context=self.autocast)
        self.bf16 = bf16
        self.losses: list[Tensor] = []

    def autocast(self) -> AbstractContextManager:
        """What Lightning's bf16-mixed runs a training step under: autocast without its weight cache."""
        return torch.autocast("cpu", torch.bfloat16, enabled=self.bf16, cache_enabled=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y)

    def keep(self, split: str, loss: Tensor, logits: Tensor, targets: Sequence[Tensor], copy: bool = False) -> None:
        self.losses.append(loss.detach().clone())


def mnist(make_cfg: Callable[..., DictConfig]) -> tuple[Tensor, Tensor]:
    """MNIST's training images and labels, as a job's data module splits them."""
    data = instantiate(make_cfg().data)
    data.setup()
    return data.splits["train"]


def train(execution: Execution, trainee: Trainee, batches: list[tuple[Tensor, Tensor]]) -> Trainee:
    execution.refuse(None, "cpu")  # type: ignore[arg-type]  # no config is read on a CPU
    execution.prepare(trainee, None)  # type: ignore[arg-type]  # nor the data
    torch.manual_seed(1)  # the same dropout masks, drawn in the same order
    with trainee.autocast():  # as Lightning runs a training step
        execution.train(trainee, batches)
    return trainee


@pytest.mark.parametrize(
    ("arch", "dropout", "kernels", "steps", "batch", "bf16"),
    [
        ("ffnn", 0.0, (), 24, 128, False),
        ("ffnn", 0.2, (), 24, 128, False),  # torch's masks (0.2 is no multiple of 1/256)
        ("ffnn", 0.0, ("onednn",), 24, 128, False),  # the GEMMs on oneDNN, as the kernel choice may set them
        ("ffnn", 0.2, ("onednn",), 24, 128, False),
        ("cnn", 0.0, (), 8, 32, False),
        ("cnn", (0.25, 0.5), ("bytes",), 8, 32, False),  # the masks of hwbench's byte kernel
        ("cnn", (0.25, 0.5), ("bytes", "onednn"), 8, 32, False),
        ("ffnn", 0.2, (), 24, 128, True),
        ("cnn", (0.25, 0.5), ("bytes",), 8, 32, True),
    ],
)
def test_fused_takes_the_steps_eager_takes(make_cfg, arch: str, dropout: object, kernels: tuple[str, ...], steps: int,
                                           batch: int, bf16: bool) -> None:  # fmt: skip
    torch.manual_seed(0)
    net = init_weights(FFNN(dropout=dropout) if arch == "ffnn" else CNN(dropout=dropout), "keras")  # type: ignore[arg-type]
    for layers in kernel_layers(net).values():  # each kind on the kernel named for it, else torch's
        use(layers, next((k for k in kernels if k in layers[0].kernels()), "torch"))
    start = copy.deepcopy(net)
    x, y = (t[: steps * batch] for t in mnist(make_cfg))
    batches = list(zip(x.split(batch), y.split(batch), strict=True))
    eager = train(Eager(), Trainee(copy.deepcopy(net), bf16=bf16), batches)
    fused_strategy = Fused()
    fused = train(fused_strategy, Trainee(net, bf16=bf16), batches)
    assert fused_strategy.part().kind == "fused" and fused_strategy.cpu_step is not None
    assert fused_strategy.cpu_step.onednn == ("onednn" in kernels and onednn_available())  # the GEMMs it was set to
    tolerance = BF16_TOLERANCE if bf16 else TOLERANCE
    for (name, ours), theirs, before in zip(fused.net.named_parameters(), eager.net.parameters(), start.parameters(),
                                            strict=True):  # fmt: skip
        assert (ours - theirs).abs().max() <= tolerance, name
        assert (theirs - before).abs().max() > 2 * tolerance, name  # every layer learned: the check can fail
    torch.testing.assert_close(torch.stack(fused.losses), torch.stack(eager.losses), rtol=0, atol=10 * tolerance)


def test_a_cpu_job_the_fused_step_does_not_cover_runs_eager_and_says_so_in_one_line(hwbench_cli, tmp_path) -> None:
    # a covered one runs fused: test_gpu_path.py's CPU sweep reads "fused" from its record
    tiny = ("device=cpu", "epochs=1", "data.train_limit=1000", "device.threads=1")
    other = hwbench_cli("execution=fused", "optim=rmsprop", *tiny, "output_root=rmsprop")
    assert other.returncode == 0, other.stderr[-2000:]
    (record,) = [read_record(p) for p in (tmp_path / "rmsprop").rglob("results.json")]
    assert record.status == "ok" and record.execution is not None and record.execution.kind == "eager"
    lines = [line for line in (other.stderr + other.stdout).splitlines() if "does not cover" in line]
    assert len(lines) == 1 and "RMSprop" in lines[0] and "run eager" in lines[0]


def test_auto_times_both_steps_trains_the_faster_and_leaves_no_trace(make_cfg, caplog) -> None:
    torch.manual_seed(0)
    x, y = (t[:512] for t in mnist(make_cfg))
    batches = list(zip(x.split(128), y.split(128), strict=True))
    net = init_weights(FFNN(dropout=0.2), "keras")
    trainee, before, rng = Trainee(copy.deepcopy(net)), copy.deepcopy(net.state_dict()), torch.get_rng_state()
    auto = Auto(rounds=3)
    auto.refuse(None, "cpu")  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="hwbench.execution.auto"):
        auto.prepare(trainee, SimpleNamespace(batch_size=128, splits={"train": (x, y)}))  # type: ignore[arg-type]
    timings = auto.ms_per_step
    assert set(timings) == {"eager", "fused"} and min(timings.values()) > 0
    chosen = min(timings, key=timings.__getitem__)
    assert (auto.part().kind, auto.part().mode) == (chosen, "auto")
    assert next(r.getMessage() for r in caplog.records if "execution=auto" in r.getMessage()).startswith(
        f"execution=auto: {chosen} (eager "
    )
    # the timed steps left nothing behind: weights, the random stream, the metrics' outputs, the gradients
    for name, tensor in trainee.net.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert torch.equal(torch.get_rng_state(), rng) and not trainee.losses
    assert all(p.grad is None for p in trainee.net.parameters())
    torch.manual_seed(1)
    auto.train(trainee, batches)
    eager = train(Eager(), Trainee(copy.deepcopy(net)), batches)
    for ours, theirs in zip(trainee.net.parameters(), eager.net.parameters(), strict=True):
        assert (ours - theirs).abs().max() <= TOLERANCE


def test_auto_runs_eager_where_the_fused_step_does_not_apply(caplog) -> None:
    auto = Auto(rounds=1)
    auto.refuse(None, "cpu")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        auto.prepare(Trainee(FFNN(), momentum=0.9), SimpleNamespace(batch_size=4, splits={}))  # type: ignore[arg-type]
    assert auto.part().kind == "eager" and not auto.ms_per_step
    assert any("does not cover SGD with momentum" in r.getMessage() for r in caplog.records)


def test_the_cpu_fused_driver_alternates_eager_fused_and_the_script_and_names_the_cpu(peer_script) -> None:
    tiny = ["--peers", "torch", "--arch", "ffnn", "--repeats", "1", "--epochs", "2", "device.threads=1",
            "data.train_limit=1000", "measure=minimal"]  # fmt: skip
    result = peer_script("cpu_fused.py", *tiny)
    (row,) = peer_rows(result.stdout, "cpu_fused")
    assert set(row["all"]) == {"hwbench eager", "hwbench fused", "torch script"}  # JAX and Keras left out
    assert all(len(v) == 1 and v[0] > 0 for v in row["all"].values()) and row["cpu"] == cpu_description()
    fused, script = row["all"]["hwbench fused"][0], row["all"]["torch script"][0]
    assert row["fused_vs_torch_script"] == pytest.approx(fused / script)
    assert "fused/torch script" in result.stdout and row["cpu"].split()[0] in result.stdout
