"""Fixtures: the real MNIST from ../shared/data, configs composed as Hydra composes them, real CLI runs."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hwbench.data.datamodules import default_root
from hwbench.job.config import compose_config

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
# a job that measures its clock, epochs and test alone (conf/measure/minimal.yaml), on torch's own CPU kernels (no
# kernel timing before training): for the tests that read nothing else (the measurements' own tests use them all)
CLOCK_ONLY = ("measure=minimal", "device.cpu_kernels.linear=torch", "device.cpu_kernels.dropout=torch",
              "device.cpu_kernels.conv2d=torch")  # fmt: skip


def _data_root() -> str:
    """$HWBENCH_DATA, else ../shared/data (CI), else the project's own data folder (fetched on first use)."""
    return os.environ.get("HWBENCH_DATA") or (str(SHARED_DATA) if SHARED_DATA.is_dir() else default_root())


@pytest.fixture(autouse=True)
def no_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output goes to a pipe here, whatever width the runner's terminal has (pytest-xdist sets COLUMNS in its
    workers): the tests that want a width set one."""
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture(autouse=True, scope="session")
def matmul_peak_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The measured matmul peak's cache (hwbench/measure/matmul_peak.py) in a folder of the session's own: tests
    never read or write the user's ~/.cache, and each pytest worker probes a setting once."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("hwbench-cache")
        patch.setenv("HWBENCH_CACHE", str(folder))
        yield folder


@pytest.fixture(autouse=True)
def machine_share(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """pytest-xdist runs tests side by side; a test marked ``quiet`` has the machine to itself: it waits for the
    running tests to end and the others wait for it (an exclusive flock on a file every test holds shared)."""
    quiet = request.node.get_closest_marker("quiet") is not None
    path = tmp_path_factory.getbasetemp().parent / "hwbench-machine.lock"  # the workers' basetemps share a parent
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if quiet else fcntl.LOCK_SH)
        yield
        fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def data_root() -> str:
    return _data_root()


@pytest.fixture
def make_cfg(data_root: str, tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the project's config with overrides, as ``python -m hwbench`` would."""

    def make(*overrides: str) -> DictConfig:
        return compose_config([f"data.root={data_root}", "device=cpu", *overrides])

    return make


@pytest.fixture
def hwbench_cli(data_root: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``python -m hwbench ARGS`` in a subprocess with its outputs under tmp_path/outputs."""

    def run(*args: str, data: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "HWBENCH_DATA": data or data_root, "PYTHONUNBUFFERED": "1"}
        default_root = (
            [] if any(a.startswith("output_root=") for a in args) else [f"output_root={tmp_path / 'outputs'}"]
        )
        cmd = [sys.executable, "-m", "hwbench", *args, *default_root]
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    return run


@pytest.fixture
def peer_script(data_root: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``python benchmarks/NAME ARGS`` (keras_peer.py, jax_peer.py) in tmp_path, and check it exits 0.
    ``hide``: a module to present as not installed (``sys.modules[name] = None`` is how Python spells that to
    find_spec and import alike)."""

    def run(name: str, *args: str, hide: str = "") -> subprocess.CompletedProcess:
        script = REPO / "benchmarks" / name
        code = (
            f"import runpy, sys; sys.path.insert(0, {str(script.parent)!r}); "  # as `python benchmarks/NAME`
            f"{f'sys.modules[{hide!r}] = None; ' if hide else ''}"
            f"sys.argv = [{name!r}, *{list(args)!r}]; runpy.run_path({str(script)!r}, run_name='__main__')"
        )
        env = {**os.environ, "HWBENCH_DATA": data_root}
        cmd = [sys.executable, "-c", code]
        result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    return run


def peer_rows(stdout: str, name: str) -> list[dict]:
    """The rows of a peer script's JSON line (``{"keras_peer": [...]}``)."""
    (line,) = [line for line in stdout.splitlines() if line.startswith(f'{{"{name}"')]
    return json.loads(line)[name]


def next_steps(where: str, cwd: Path) -> list[str]:
    """The two lines after "results in WHERE" of a job run with this interpreter and PATH from ``cwd``."""
    return [f"  {spelled('tensorboard', cwd)} --logdir {where}", f"  {spelled('hwbench-compare', cwd)} {where}"]


def spelled(name: str, cwd: Path) -> str:
    """``name`` (tensorboard, hwbench-compare, hwbench: ``python -m hwbench``) as a process with this interpreter
    and PATH, run from ``cwd``, spells it in the commands it prints (hwbench/commands.py)."""
    from hwbench.commands import command

    here = Path.cwd()
    os.chdir(cwd)  # the commands' paths are spelled from where the process runs
    try:
        return command(name)
    finally:
        os.chdir(here)


def scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar of a TensorBoard run, read back with TensorBoard's own reader."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def cuda(test: Callable) -> Callable:
    """A test that needs a CUDA GPU: marked ``gpu`` (``pytest -m gpu`` runs them all) and skipped without one."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(test))


def as_if_quiet(folder: Path) -> None:
    """The runs' machine load and stability as a quiet machine's: these runs share the machine with the other test
    worker, so they come out noisy or unsteady, and compare never counts those in a setup (tested in test_compare and
    test_records). Here the setups and their speed-ups themselves are under test."""
    for path in folder.rglob("results.json"):
        record = json.loads(path.read_text())
        if load := record.get("machine_load"):
            load |= {
                "others_cpu_percent": 0.0,
                "steal_percent": 0.0,
                "canary_after_gflops": load["canary_before_gflops"],
            }
        if stability := (record.get("training") or {}).get("stability"):  # a skipped run has none
            stability |= {"iqr": 0.0, "iqr_over_median": 0.0}
        path.write_text(json.dumps(record))
