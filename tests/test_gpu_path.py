"""The GPU path that measures the GPU: graphed steps, busy %, memory and energy. The CPU-side pieces (the
one line for a graphed CPU run, peak host memory, energy fields saying why they are empty) run everywhere."""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.optim.lr_scheduler import OneCycleLR

from conftest import CLOCK_ONLY, cuda
from hwbench.data.datamodules import SyntheticDataModule
from hwbench.execution import Eager, Execution, Fused, Graph, PrepareExecution
from hwbench.job.runner import run
from hwbench.model.classifier import Classifier
from hwbench.model.paper import CNN, FFNN, init_weights
from hwbench.record.results import read_record

TINY = ("epochs=2", "data.train_limit=1000")


# A job's one line is its record's summary: python -m hwbench ends with "error: " and it, exit 1 (end to end in
# test_devices.py for a skipped job, test_config_refusals.py for a failed one); here the job runs in this process.
def test_a_graphed_run_on_the_cpu_gets_one_line(make_cfg, tmp_path: Path) -> None:
    record = run(make_cfg("execution=graph", *TINY), tmp_path)
    assert record.summary() == (
        "ffnn cpu epochs=2: skipped: execution=graph captures CUDA graphs and this job runs on cpu: "
        "use a CUDA GPU (device=gpu) or execution=eager"
    )
    assert record.traceback is None and read_record(tmp_path / "results.json").status == "skipped"


def test_a_sweep_skips_graphed_cpu_jobs_and_goes_on(hwbench_cli, tmp_path: Path) -> None:
    result = hwbench_cli("-m", "execution=eager,graph,fused", "device=cpu", "epochs=1", "data.train_limit=512",
                         *CLOCK_ONLY)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    records = [read_record(p) for p in (tmp_path / "outputs").rglob("results.json")]
    ran = sorted((r.status, r.execution.kind if r.execution else None) for r in records)
    assert ran == [("ok", "eager"), ("ok", "fused"), ("skipped", "graph")]  # fused has a CPU step (test_cpu_fused)


def test_graph_does_not_combine_with_what_syncs_or_reschedules(make_cfg, tmp_path: Path) -> None:
    record = run(make_cfg("execution=graph", "device.strategy=ddp", *TINY), tmp_path)  # no GPU needed to refuse
    assert record.status == "failed" and "execution=graph does not combine with DDP" in record.summary()


def test_every_run_records_peak_host_memory_and_why_energy_is_missing(make_cfg, tmp_path: Path) -> None:
    torch_kernels = CLOCK_ONLY[1:]  # no kernel timing before training; every measurement (conf/measure/all.yaml)
    record = run(make_cfg("epochs=1", "data.train_limit=512", *torch_kernels), tmp_path)
    assert record.status == "ok"
    resources = record.resources
    assert resources.peak_host_rss_mb > 100  # torch alone takes more than that
    assert resources.gpu_peak_allocated_mb is None and resources.gpu_busy_percent is None  # a CPU run
    assert record.training.peak is None and "CPUs" in record.training.mfu_unavailable
    assert resources.energy_seconds > 0
    if not Path("/sys/class/powercap").is_dir():  # this project's VMs: no RAPL
        assert resources.cpu_energy_j is None and "powercap" in resources.cpu_energy_unavailable
        assert resources.samples_per_joule is None
    else:  # a machine whose kernel exposes RAPL: either a figure or the reason there is none
        assert (resources.cpu_energy_j is not None) != (resources.cpu_energy_unavailable is not None)


def fit(net: torch.nn.Module, execution: Execution, optimizer, scheduler=None) -> list[torch.Tensor]:
    """Two epochs of 17 full batches and a short one, in Lightning steps of 8: a whole group, the epoch's last
    group with its short batch. Random images: MNIST's blank margins give the max-pool exact ties, whose
    gradient other kernels may route elsewhere (suspected from an H200 run, not established)."""
    torch.backends.cudnn.allow_tf32 = False  # float32 convolutions on both sides, as matmul precision highest
    model = Classifier(net, optimizer, scheduler, execution=execution)
    data = SyntheticDataModule(train_limit=17 * 128 + 72, val_size=1000, steps_per_execution=8)
    trainer = L.Trainer(
        accelerator="gpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[PrepareExecution(execution, data)],
    )  # fmt: skip
    trainer.fit(model, data)
    return [p.detach().clone() for p in model.net.parameters()]


def update_error(ours: list[torch.Tensor], eager: list[torch.Tensor], start: torch.nn.Module) -> float:
    """The largest |ours - eager| / |eager - start| over the parameters: how far apart the two trainings moved
    the weights, against how far they moved them (a skipped step alone would give about 1/36)."""
    errors = []
    for a, b, s in zip(ours, eager, start.parameters(), strict=True):
        moved = b.double() - s.detach().to(b).double()
        errors.append(((a.double() - b.double()).norm() / moved.norm()).item())
    return max(errors)


@cuda
@pytest.mark.parametrize("kind", ["graph", "fused"])
@pytest.mark.parametrize("arch", ["ffnn", "cnn"])
def test_graphed_steps_take_the_same_steps_as_eager(arch: str, kind: str) -> None:
    """The same updates after 36 steps from the same weights, within 1e-3 of their size: the other kernels sum
    in another order (Inductor's fused ones, cuDNN's weight gradients), nothing else differs."""
    make = {"ffnn": FFNN, "cnn": partial(CNN, dropout=0)}[arch]  # dropout draws differ between graphs and eager
    optimizer = partial(torch.optim.SGD, lr=0.05, momentum=0.9)
    torch.manual_seed(0)
    start = init_weights(make(), "keras")
    eager = fit(copy.deepcopy(start), Eager(), optimizer)
    graphed = Fused("default", steps_per_graph=8) if kind == "fused" else Graph()
    ours = fit(copy.deepcopy(start), graphed, optimizer)
    expected = {(128,) * 8, (128, 72)} if kind == "fused" else {(128,), (72,)}
    assert graphed.graphs.keys() == expected  # every step of both epochs ran in a graph
    assert update_error(ours, eager, start) < 1e-3


@cuda
def test_fused_steps_follow_the_learning_rate_schedule_as_eager() -> None:
    optimizer = partial(torch.optim.Adam, lr=0.01, betas=(0.7, 0.9))
    schedule = partial(OneCycleLR, max_lr=0.01, pct_start=0.2, cycle_momentum=False)
    torch.manual_seed(0)
    start = init_weights(FFNN(), "keras")
    eager = fit(copy.deepcopy(start), Eager(), optimizer, schedule)
    fused = Fused("default", steps_per_graph=8)
    ours = fit(copy.deepcopy(start), fused, optimizer, schedule)
    assert fused.lr is not None and fused.lr.step.item() == 36  # the table's counter moved with every step
    assert update_error(ours, eager, start) < 1e-3


@cuda
@pytest.mark.parametrize("execution", ["graph", "fused"])
def test_a_graphed_gpu_run_records_busy_memory_energy_and_mfu(make_cfg, tmp_path: Path, execution: str) -> None:
    record = run(make_cfg("device=gpu", f"execution={execution}", "epochs=2", "data.train_limit=20000"), tmp_path)
    assert record.status == "ok" and record.metrics.test_acc > 0.5
    assert record.execution.kind == execution and record.execution.prepare_seconds > 0  # before the clock started
    resources = record.resources
    assert 0 < resources.gpu_busy_percent <= 100 and resources.gpu_busy_method.startswith("CUDA events")
    assert resources.gpu_peak_allocated_mb > 0 and resources.gpu_peak_reserved_mb >= resources.gpu_peak_allocated_mb
    assert (resources.gpu_energy_j is not None) != (resources.gpu_energy_unavailable is not None)
    peak = record.training.peak
    if peak is None:  # a GPU hwbench has no datasheet figure for: the record says so instead
        assert "no dense peak known" in record.training.mfu_unavailable
    else:
        assert peak.precision == "fp32" and 0 < record.training.steady.mfu < 1


@cuda
def test_an_eager_gpu_run_reads_busy_with_the_profiler(make_cfg, tmp_path: Path) -> None:
    record = run(make_cfg("device=gpu", "epochs=2", "data.train_limit=20000"), tmp_path)
    assert record.status == "ok" and record.resources.gpu_busy_method.startswith("torch profiler")
    assert 0 < record.resources.gpu_busy_percent <= 100
