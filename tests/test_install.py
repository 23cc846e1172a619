"""hwbench as a wheel: installed into a fresh environment, run from a folder outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO
from hwbench.results import read_record


@pytest.mark.slow
def test_the_wheel_installs_and_runs_from_anywhere(data_root: str, tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(REPO / "hwbench", src / "hwbench", ignore=shutil.ignore_patterns("__pycache__"))
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
