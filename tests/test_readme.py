"""Every command line README.md and ``--help`` print runs as printed, from a fresh folder after the README's two
commands, in a shell that never activated the venv (its ``.venv/bin/`` path, as every closing line spells it).

One small sweep is shared: the README's machines comparison, shortened with ``epochs=1 data.train_limit=2000`` and
``repeats=1`` (its repeats only repeat what tests/test_compare.py proves); on a machine without CUDA it is also
the test of a CPU and GPU sweep that skips the GPU jobs, exits 0 and keeps their skip records. Each other line is
run, or named below with the test that already runs it (the same program on the same code path): every line must
be one or the other, so a line added to the README without either fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from conftest import CLOCK_ONLY, REPO, as_if_quiet
from hwbench.record.results import read_record

pytestmark = pytest.mark.xdist_group("readme")
SHORT = ("epochs=1", "data.train_limit=2000", *CLOCK_ONLY)  # where a line trains: its clock and accuracy
SETUP = "python3 -m venv .venv && .venv/bin/pip install -e "  # the README's two commands: they made this venv
STAMP = "<stamp>"
# lines another test already runs as printed (or that need what a test cannot have), and which one
# fmt: off
COVERED = {
    r"\.venv/bin/python -m pytest$":
        "the suite itself",
    r"\.venv/bin/python -m hwbench -m arch=ffnn,cnn$":
        "the shared sweep below: the same jobs, and skipped GPU ones",
    r"\.venv/bin/python -m hwbench -m arch=ffnn,cnn device=cpu,gpu$":
        "the shared sweep below, less its repeats",
    r"\.venv/bin/python -m hwbench -m arch=ffnn,cnn epochs=1,5 device=cpu$":
        "the shared sweep (at epochs=1: its jobs)",
    r"\.venv/bin/python -m hwbench$":
        "test_first_run: a default job from a shell without the venv",
    r"\.venv/bin/python -m hwbench arch=cnn epochs=1$":
        "test_first_run (one job) and the shared sweep (the cnn)",
    r"\.venv/bin/python -m hwbench -m arch=ffnn,cnn device=cpu,gpu device\.precision=32,bf16-mixed$":
        "test_devices and test_mfu (bf16-mixed on a CPU), the shared sweep (skipped GPU jobs)",
    r"\.venv/bin/python -m hwbench -m (device=cpu |arch=ffnn )?device\.threads=1,2(,4,8)?( repeats=5)?$":
        "test_compare's threads sweep (device.threads=1,2, repeats=3)",
    r"\.venv/bin/python -m hwbench -m device=gpu device\.devices=1,2,4,8 arch=cnn$":
        "test_devices (a sweep whose every job is skipped exits 1), test_scaleout (more GPUs than there are: a skip "
        "record), test_scaleout's devices sweep (DDP)",
    r"\.venv/bin/python -m hwbench experiment=paper arch=cnn$":
        "test_scripts (experiment=paper), test_models (cnn)",
    r"\.venv/bin/python -m hwbench 'logger=\[tensorboard,mlflow\]'$":
        "test_loggers (logger lists, MLflow's store)",
    r"\.venv/bin/mlflow ui --backend-store-uri sqlite:///outputs/mlflow\.db$":
        "MLflow's own server (test_loggers reads the same store with MLflow's client)",
    r"\.venv/bin/pip install -e '\.\[(cluster|mlflow)\]'$":
        "an install: CI's .ci/run installs every extra",
    r"\.venv/bin/python -m hwbench -m hydra/launcher=slurm .*":
        "test_cluster: a real local SLURM of two nodes (skipped without root)",
    r"\.venv/bin/torchrun --nnodes=2 .*":
        "test_cluster: two torchrun nodes on 127.0.0.1",
    r"\.venv/bin/python scripts/reproduce_table1\.py device=cpu$":
        "test_scripts, shortened, and stopped by SIGTERM",
}
# fmt: on
RUN = (  # the lines run here
    ".venv/bin/python -m hwbench --help",
    ".venv/bin/python -m hwbench -m arch=ffnn,cnn device=cpu,gpu repeats=5",
    ".venv/bin/hwbench-compare outputs/multiruns/<stamp>",
    ".venv/bin/hwbench-compare laptop/2026-11-24_10-00-00 server/2026-11-24_11-30-00 --baseline laptop",
    ".venv/bin/tensorboard --logdir outputs",
)


def readme_lines() -> list[str]:
    """The README's command lines: each line of its bash blocks (less comments), and each `.venv/bin/...` span."""
    text = (REPO / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        lines += [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    spans = re.findall(r"`(\.venv/bin/[^`]+ [^`]+)`", text)  # a command with arguments, not the folder alone
    return list(dict.fromkeys([*lines, *(" ".join(s.split()) for s in spans)]))


def shell(line: str, cwd: Path, data_root: str) -> subprocess.Popen:
    """``line`` as a user pastes it into bash whose PATH lacks the venv, in its own session (to stop a server)."""
    venv_bin = Path(sys.executable).parent
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and not (Path(p).is_dir() and os.path.samefile(p, venv_bin))]  # fmt: skip
    env = {**os.environ, "PATH": os.pathsep.join(path), "HWBENCH_DATA": data_root, "PYTHONUNBUFFERED": "1"}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.Popen(["bash", "-c", line], cwd=cwd, env=env, text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def ran(line: str, cwd: Path, data_root: str, timeout: float = 600) -> subprocess.CompletedProcess:
    child = shell(line, cwd, data_root)
    out, err = child.communicate(timeout=timeout)
    return subprocess.CompletedProcess(line, child.returncode, out, err)


def shortened(line: str) -> str:
    """A training line at test size: one epoch of 2,000 images, one repeat (test_compare proves repeats), its clock
    and accuracy measured (test_measure_group proves the rest)."""
    return " ".join([re.sub(r" repeats=\d+", "", line), *SHORT, "repeats=1"])


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh folder as the README's two commands leave a clone: its .venv (this one), its scripts."""
    folder = tmp_path_factory.mktemp("clone")
    (folder / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    (folder / "scripts").symlink_to(REPO / "scripts", target_is_directory=True)
    return folder


def test_every_printed_command_runs_as_printed(clone: Path, data_root: str) -> None:
    shown = ran(".venv/bin/python -m hwbench --help", clone, data_root, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    help_lines = [line.strip() for line in shown.stdout.splitlines() if line.strip().startswith(".venv/bin/")]
    lines = readme_lines()
    assert len(help_lines) >= 6 and len(lines) >= 12
    for line in [*lines, *help_lines]:  # one rule: the venv's paths, never a bare python or script
        assert line.startswith((".venv/bin/", SETUP)), line
        commands = [c.strip() for c in line.removeprefix("python3 -m venv .venv && ").split("&&")]
        for command in commands[1:] if line.startswith(SETUP) else commands:
            claimed = [p for p in COVERED if re.fullmatch(p, command)] + [r for r in RUN if r == command]
            assert len(claimed) == 1, f"{command!r}: run it in this test, or name the test that runs it"

    sweep = ran(shortened(RUN[1]), clone, data_root)  # 2 jobs train, 2 GPU jobs are skipped on a CPU machine
    assert sweep.returncode == 0, sweep.stderr[-2000:]  # the rule: ok or skipped, one at least ran
    lines = sweep.stdout.strip().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("results in outputs/multiruns/"))
    where, *closing = lines[at : at + 3]  # then where the sweep's time went
    stamp = where.removeprefix("results in outputs/multiruns/")
    assert [line.strip() for line in closing] == [f".venv/bin/tensorboard --logdir outputs/multiruns/{stamp}",
                                                  f".venv/bin/hwbench-compare outputs/multiruns/{stamp}"]  # fmt: skip
    records = {p.parent.name: read_record(p) for p in (clone / "outputs").rglob("results.json")}
    assert all(records[f"{k}_{arch}_cpu_e1"].status == "ok" for k, arch in ((0, "ffnn"), (2, "cnn")))
    for k, arch in [] if torch.cuda.is_available() else ((1, "ffnn"), (3, "cnn")):  # a skip record, one line
        skipped = records[f"{k}_{arch}_gpu_e1"]
        assert skipped.status == "skipped" and skipped.reason.startswith("no CUDA device: pick a device")
        assert f"{arch} gpu epochs=1: skipped: no CUDA device" in sweep.stdout

    compared = ran(RUN[2].replace(STAMP, stamp), clone, data_root, timeout=300)  # README and the closing line
    assert compared.returncode == 0, compared.stderr[-2000:]
    gpu = torch.cuda.is_available()
    assert f"4 records ({4 if gpu else 2} ok, {0 if gpu else 2} without a result)" in compared.stdout
    for machine, copied in (("laptop", "2026-11-24_10-00-00"), ("server", "2026-11-24_11-30-00")):
        shutil.copytree(clone / "outputs" / "multiruns" / stamp, clone / machine / copied)
        as_if_quiet(clone / machine)  # a noisy run is never a baseline: on a busy test machine, --baseline says so
    machines = ran(RUN[3], clone, data_root, timeout=300)
    assert machines.returncode == 0, machines.stderr[-2000:]
    assert re.search(r"speed-up: [^;]*\(cnn: laptop/2026-11-24_10-00-00: ", " ".join(machines.stdout.split()))

    server = shell(RUN[4] + " --port 0", clone, data_root)  # a free port; it serves until stopped
    try:
        said, deadline = "", time.monotonic() + 120
        while not (found := re.search(r"http://localhost:(\d+)/", said)) and time.monotonic() < deadline:
            said += server.stderr.readline()
        assert found, said[-2000:]
        with urllib.request.urlopen(f"http://localhost:{found.group(1)}/data/runs", timeout=60) as response:
            assert response.status == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
    assert server.wait(timeout=60) == 0
