"""The GPU path that measures the GPU: graphed steps, busy %, memory and energy. The CPU-side pieces (the
one line for a graphed CPU run, peak host memory, energy fields saying why they are empty) run everywhere."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from conftest import cuda
from hwbench.models import CNN, FFNN
from hwbench.results import read_record
from hwbench.train import run

TINY = ("epochs=2", "data.train_limit=1000")


def test_a_graphed_run_on_the_cpu_gets_one_line(hwbench_cli) -> None:
    result = hwbench_cli("execution=graph", "device=cpu", *TINY)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: ffnn cpu epochs=2: skipped: execution=graph captures CUDA graphs and this job runs on cpu: "
        "use a CUDA GPU (device=gpu) or execution=eager"
    )


def test_a_sweep_skips_graphed_cpu_jobs_and_goes_on(hwbench_cli, tmp_path: Path) -> None:
    result = hwbench_cli("-m", "execution=eager,graph", "device=cpu", *TINY)
    assert result.returncode == 0, result.stderr[-2000:]
    statuses = {p.parent.name: read_record(p).status for p in (tmp_path / "outputs").rglob("results.json")}
    assert sorted(statuses.values()) == ["ok", "skipped"]


def test_graph_does_not_combine_with_what_syncs_or_reschedules(hwbench_cli) -> None:
    result = hwbench_cli("execution=graph", "device=cpu", "device.precision=16-mixed", *TINY)
    assert result.returncode == 1
    assert "execution=graph does not combine with device.precision=16-mixed" in result.stderr.splitlines()[-1]


def test_every_run_records_peak_host_memory_and_why_energy_is_missing(make_cfg, tmp_path: Path) -> None:
    record = run(make_cfg(*TINY), tmp_path)
    assert record.status == "ok"
    resources = record.resources
    assert resources.peak_host_rss_mb > 100  # torch alone takes more than that
    assert resources.gpu_peak_allocated_mb is None and resources.gpu_busy_percent is None  # a CPU run
    assert resources.energy_seconds > 0
    if not Path("/sys/class/powercap").is_dir():  # this project's VMs: no RAPL
        assert resources.cpu_energy_j is None and "powercap" in resources.cpu_energy_unavailable
        assert resources.samples_per_joule is None
    else:  # a machine whose kernel exposes RAPL: either a figure or the reason there is none
        assert (resources.cpu_energy_j is not None) != (resources.cpu_energy_unavailable is not None)


@cuda
def test_graphed_steps_take_the_same_steps_as_eager() -> None:
    from hwbench.graphed import GraphedStep

    torch.manual_seed(0)
    for net in (FFNN(), CNN(dropout=0)):  # dropout draws differ between graphs and eager: leave it out here
        net = net.cuda()
        eager = copy.deepcopy(net)
        graphed_opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        eager_opt = torch.optim.SGD(eager.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.rand(10, 64, 1, 28, 28, device="cuda"), torch.randint(0, 10, (10, 64), device="cuda")
        step = GraphedStep(net, graphed_opt, F.cross_entropy, x[0], y[0])
        for xb, yb in zip(x, y, strict=True):  # the same batches, in the same order
            step(xb, yb)
            eager_opt.zero_grad()
            F.cross_entropy(eager(xb), yb).backward()
            eager_opt.step()
        for a, b in zip(net.parameters(), eager.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # float reassociation in other kernels


@cuda
def test_a_graphed_gpu_run_records_busy_memory_and_energy(make_cfg, tmp_path: Path) -> None:
    record = run(make_cfg("device=gpu", "execution=graph", "epochs=2", "data.train_limit=20000"), tmp_path)
    assert record.status == "ok" and record.metrics.test_acc > 0.5
    assert record.capture_seconds > 0 and record.compile_seconds is None  # captured before the clock started
    resources = record.resources
    assert 0 < resources.gpu_busy_percent <= 100
    assert resources.gpu_peak_allocated_mb > 0 and resources.gpu_peak_reserved_mb >= resources.gpu_peak_allocated_mb
    assert (resources.gpu_energy_j is not None) != (resources.gpu_energy_unavailable is not None)
