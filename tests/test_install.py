"""hwbench as a wheel: installed into a fresh environment, run from a folder outside the checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO, spelled
from hwbench.record.results import read_record


@pytest.mark.slow
def test_the_wheel_installs_and_runs_from_anywhere(data_root: str, tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    for package in ("hwbench", "conf"):  # conf/ is at the top; the wheel carries it as hwbench.conf
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", src], check=True)
    (wheel,) = (tmp_path / "dist").glob("hwbench-*.whl")

    # a fresh venv; the dependencies already installed here are made visible, so nothing is downloaded
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(subprocess.run([venv / "bin" / "python", "-c", purelib],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", site, wheel], check=True)
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "HWBENCH_DATA": data_root, "PYTHONPATH": ""}

    def hwbench(*args: str) -> subprocess.CompletedProcess:
        cmd = [venv / "bin" / "python", "-m", "hwbench", *args]
        return subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)

    where = subprocess.run([venv / "bin" / "python", "-c", "import hwbench; print(hwbench.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert where.startswith(str(site))  # the installed copy, not the checkout
    help_ = hwbench("--help")
    assert help_.returncode == 0 and "arch: cnn, ffnn, speedrun" in help_.stdout
    result = hwbench("epochs=1", "device=cpu", "data.train_limit=500")
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = (elsewhere / "outputs").rglob("results.json")
    assert read_record(record).status == "ok"


def test_without_the_cluster_extra_the_suite_runs_and_skips_only_the_submitit_test(tmp_path: Path) -> None:
    """As after ``pip install -e '.[dev]'``: the cluster extra is the only provider of ``hydra_plugins``."""
    hide = tmp_path / "hide"
    hide.mkdir()  # sitecustomize runs at every interpreter's start: pytest's, and each hwbench it starts
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['hydra_plugins'] = None  # not installed\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hide), str(REPO)])}

    def python(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)

    probe = python("-c", "import hydra_plugins")
    assert probe.returncode == 1 and "ModuleNotFoundError" in probe.stderr  # hidden as an absent package is

    pytest_ = ("-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "0")  # in this process: its output is read
    collected = python(*pytest_, "--collect-only")
    assert collected.returncode == 0, collected.stdout[-3000:]
    assert re.fullmatch(r"\d+ tests collected in [\d.]+s", collected.stdout.strip().splitlines()[-1])  # no error
    assert "tests/test_scaleout.py::test_submitit_local_sweep_lands_in_one_sweep_folder" in collected.stdout

    scaleout = "tests/test_scaleout.py::"
    ran = python(*pytest_, "-rs", f"{scaleout}test_submitit_local_sweep_lands_in_one_sweep_folder",
                 f"{scaleout}test_ranks_take_disjoint_slices_of_each_epochs_permutation",
                 "tests/test_cli.py::test_help_and_cfg_job")  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:]
    assert re.search(r"3 passed, 1 skipped", ran.stdout), ran.stdout[-2000:]
    assert "SKIPPED [1] tests/test_scaleout.py" in ran.stdout and "the cluster extra is not installed" in ran.stdout

    for launcher in ("submitit_local", "slurm"):  # ours, and the plugin's own
        result = python("-m", "hwbench", "-m", f"hydra/launcher={launcher}", "epochs=1")
        assert result.returncode == 1
        assert result.stderr.strip() == (
            "error: the launchers slurm, local and submitit_local need the cluster extra: "
            f"{spelled('pip', REPO)} install -e '.[cluster]' (hydra-submitit-launcher)"  # as this shell runs it
        )
