"""What a real job prints, captured to a file and on a terminal (a pseudo-terminal): each line once, on a line
of its own, and at the end the results folder with the two commands that open it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from conftest import CLOCK_ONLY, next_steps, scalars

JOB = ("device=cpu", "epochs=2", "data.train_limit=1000")  # 8 optimizer steps an epoch at batch 128


def run_on_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """``args`` with stdout and stderr on a pseudo-terminal 120 columns wide: what a user sees, raw."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # EIO: the job has closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=600), b"".join(chunks).decode(errors="replace")


def test_a_job_captured_to_a_file_prints_each_line_once_and_names_its_folder(hwbench_cli, tmp_path: Path) -> None:
    result = hwbench_cli(*JOB)
    assert result.returncode == 0, result.stderr[-2000:]
    screen = result.stdout + result.stderr
    assert "\r" not in screen and "\x1b[" not in screen  # no progress-bar frames or escape codes in a file
    lines = [line for line in screen.splitlines() if line.strip()]
    repeated = {line for line in lines if lines.count(line) > 1}
    assert not repeated, repeated
    assert not any(line.startswith(("INFO:", "[")) for line in lines)  # no Lightning or Hydra prefixes
    assert "GPU available: False, used: False" in lines  # Lightning's lines, once
    assert not [line for line in lines if "Trainer.fit" in line]  # not its "stopped: max_epochs reached"
    for epoch in (1, 2):
        assert sum(line.startswith(f"epoch {epoch}/2 done: ") for line in lines) == 1

    (folder,) = (tmp_path / "outputs" / "runs").iterdir()
    where = os.path.relpath(folder, tmp_path)
    summary = next(line for line in lines if line.startswith("ffnn cpu epochs=2: test acc"))
    assert result.stdout.strip().splitlines()[-4:] == [
        summary,
        f"results in {where}",
        *next_steps(where, tmp_path),
    ]
    log = (folder / "hwbench.log").read_text()
    assert log.strip().splitlines()[-1].endswith(f"[hwbench.summary][INFO] - {summary}")  # the closing line too
    assert "epoch 2/2 done" in log and "GPU available" in log
    assert "run/test_acc" in scalars(folder)  # what tensorboard --logdir opens there


def test_torchs_notes_on_the_machine_go_to_the_log_not_the_screen(hwbench_cli, tmp_path: Path, monkeypatch) -> None:
    """Before, execution=compiled on a CPU printed torch's `W... cpp_extension.py:183] No CUDA runtime is found`.
    torch notes it where a CUDA toolkit's folder is found without a CUDA device: CUDA_HOME names one."""
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    result = hwbench_cli("execution=compiled", "device=cpu", "epochs=1", "data.train_limit=2000", *CLOCK_ONLY)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CUDA runtime" not in result.stdout + result.stderr and "cpp_extension" not in result.stdout + result.stderr
    (folder,) = (tmp_path / "outputs" / "runs").iterdir()
    if not torch.cuda.is_available():  # with a CUDA device torch has nothing to note
        log = (folder / "hwbench.log").read_text()
        assert f"[torch.utils.cpp_extension][WARNING] - No CUDA runtime is found, using CUDA_HOME='{tmp_path}'" in log


def test_on_a_terminal_log_lines_never_land_on_the_progress_bar(data_root: str, tmp_path: Path) -> None:
    env = {**os.environ, "HWBENCH_DATA": data_root, "PYTHONUNBUFFERED": "1"}
    # the clock alone: the bar and the log lines are under test here (every line of a full job's: the file test)
    cmd = [sys.executable, "-m", "hwbench", *JOB, *CLOCK_ONLY, f"output_root={tmp_path / 'outputs'}"]
    code, screen = run_on_terminal(cmd, tmp_path, env)
    assert code == 0, screen[-3000:]
    for epoch in (1, 2):  # the bar counts optimizer steps, and epochs as the log lines do
        assert re.search(rf"Epoch {epoch}/2: 100%\|[^\r\n]*\| 8/8 \[[^\]]*step/s\]", screen)
    assert "Epoch 0" not in screen
    segments = re.split(r"[\r\n]", screen)  # what the terminal shows between carriage returns and newlines
    for text in ("epoch 1/2 done: ", "epoch 2/2 done: ", "GPU available", "ffnn cpu epochs=2: test acc"):
        (segment,) = [s for s in segments if text in s]  # once
        assert segment.startswith(text), segment  # at the start of a line, not after a bar's last frame
    assert screen.rstrip().splitlines()[-3].startswith("results in outputs/runs/")
