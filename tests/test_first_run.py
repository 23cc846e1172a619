"""A newcomer's first run: ``.venv/bin/python -m hwbench`` from a shell that never activated the venv, with the
default device. The names say the device that ran; the next steps it prints run exactly as printed; TensorBoard
shows every figure of the run where the README says (read back from the event files and from a live server)."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from hwbench.record.results import ResultsRecord, read_record

pytestmark = pytest.mark.xdist_group("first_run")  # one pytest worker: one run for the module's tests
RUN = ("epochs=2", "data.train_limit=2000")  # 16 optimizer steps an epoch at batch 128: 32 in all
STEPS = 32
SHOWN_HPARAMS = ["arch", "noisy", "hardware", "host", "precision"]  # the HParams table's columns at first
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def the_device() -> str:
    """What device=auto trains on here, as torch says: the name the run should give it."""
    return "gpu" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"


def path_without(folder: Path) -> str:
    """PATH less ``folder``: a shell where the venv was never activated."""
    entries = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(p for p in entries if p and not (Path(p).is_dir() and os.path.samefile(p, folder)))


def in_shell(line: str, cwd: Path, **kwargs) -> subprocess.Popen:
    """``line`` as a user pastes it into bash, whose PATH lacks the venv."""
    env = {**os.environ, "PATH": path_without(Path(sys.executable).parent)}
    bash = shutil.which("bash") or "/bin/bash"
    return subprocess.Popen([bash, "-c", line], cwd=cwd, env=env, text=True, start_new_session=True, **kwargs)


@pytest.fixture(scope="module")
def first_run(data_root: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], ResultsRecord]:
    """The run's working folder, its stdout lines, and its record (output_root left at its default)."""
    cwd = tmp_path_factory.mktemp("newcomer")
    env = {**os.environ, "HWBENCH_DATA": data_root, "PYTHONUNBUFFERED": "1",
           "PATH": path_without(Path(sys.executable).parent)}  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "hwbench", *RUN], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = (cwd / "outputs").rglob("results.json")
    return cwd, result.stdout.strip().splitlines(), read_record(record)


def test_a_default_run_names_the_device_that_ran(first_run) -> None:
    cwd, lines, record = first_run
    device = the_device()
    (folder,) = (cwd / "outputs" / "runs").iterdir()
    assert folder.name.endswith(f"_ffnn_{device}_e2") and "auto" not in folder.name
    summary = next(line for line in lines if "test acc" in line)
    assert summary.startswith(f"ffnn {device} epochs=2: test acc")
    assert record.device == device and record.run_name == f"ffnn_{device}_e2"
    assert record.config["device"]["name"] == device and record.config["device"]["accelerator"] == "auto"


def test_the_next_steps_run_exactly_as_printed(first_run) -> None:
    cwd, lines, _ = first_run
    where, tensorboard, compare = lines[-3:]
    assert where.startswith("results in outputs/runs/")
    assert not compare.strip().startswith("hwbench-compare ")  # not on this PATH: named by its path

    compared = in_shell(compare.strip(), cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = compared.communicate(timeout=300)
    assert compared.returncode == 0, err
    assert "1 record (1 ok, 0 without a result)" in out

    server = in_shell(tensorboard.strip(), cwd, stderr=subprocess.PIPE)
    try:
        port = serving_port(server)
        assert loaded_runs(port) == ["."]  # the run, whose folder is the logdir
        experiment = post(port, "/data/plugin/hparams/experiment", {"experimentName": ""})
        shown = [h["name"] for h in experiment["hparamInfos"] if h["differs"]]
        assert sorted(shown) == sorted(SHOWN_HPARAMS)  # shown before a tick: the caveat, the hardware
        metrics = [m["name"]["tag"] for m in experiment["metricInfos"]][:5]
        assert metrics[:2] == ["run/train_samples_per_sec", "run/test_acc"]
        if CHROMIUM:  # what a browser shows first, as the server serves it (Debian's chromium; else said below)
            opens_on_the_headline(port, cwd)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # TensorBoard's own way to stop: exit status 0
    assert server.wait(timeout=60) == 0


def opens_on_the_headline(port: int, cwd: Path) -> None:
    """TensorBoard's default view (Time Series) in headless Chromium: its first group, open without a click, is
    the headline, test accuracy and training samples/s its first cards; the Text tab's first tag the summary.
    The screenshot is kept beside the run (cwd/tensorboard.png) for a person to look at."""

    def browse(*args: str, at: str = "") -> str:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={cwd / 'chromium-profile'}", "--window-size=1400,1000",
               "--virtual-time-budget=20000", *args, f"http://localhost:{port}/{at}"]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout

    dom = browse("--dump-dom")
    groups = re.findall(r'class="group-title" title="([^"]*)"', dom)
    cards = re.findall(r'class="tag"[^>]*title="([^"]*)"', dom)
    assert groups[:1] == ["Headline"], groups
    assert cards[:2] == ["Headline/1 test accuracy", "Headline/2 train samples per s"] or (
        cards[0] == "Headline/1 test accuracy" and cards[1].startswith("Headline/2 train samples per s (")
    ), cards[:6]
    # the Text tab draws in shadow roots a DOM dump leaves out: its tags as the server lists them, in the order
    # its dashboard sorts them (by code point: a capital first)
    (tags,) = get(port, "/data/plugin/text/tags").values()  # type: ignore[union-attr]
    assert sorted(tags)[0] == "Summary/text_summary" and "fingerprint/text_summary" in tags, tags
    browse(f"--screenshot={cwd / 'tensorboard.png'}")
    assert (cwd / "tensorboard.png").read_bytes()[:4] == b"\x89PNG"


def serving_port(server: subprocess.Popen, timeout: float = 120) -> int:
    """The port TensorBoard says it serves on (the first free one from 6006)."""
    deadline, said = time.monotonic() + timeout, ""
    while time.monotonic() < deadline and server.poll() is None:
        ready, _, _ = select.select([server.stderr], [], [], 1)
        if ready:  # what is there, unbuffered: a buffered readline could hold a line that select no longer sees
            said += os.read(server.stderr.fileno(), 1 << 16).decode(errors="replace")
            if found := re.search(r"http://localhost:(\d+)/", said):
                return int(found.group(1))
    raise AssertionError(f"TensorBoard did not serve: {said[-2000:]}")


def loaded_runs(port: int, timeout: float = 120) -> object:
    """The runs TensorBoard lists, once it has read the logdir (it serves first and reads in the background)."""
    deadline = time.monotonic() + timeout
    while not (runs := get(port, "/data/runs")) and time.monotonic() < deadline:
        time.sleep(0.5)
    return runs


def get(port: int, path: str) -> object:
    with urllib.request.urlopen(f"http://localhost:{port}{path}", timeout=60) as response:
        return json.load(response)


def post(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"http://localhost:{port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def test_every_figure_of_the_run_is_in_tensorboard_default_views(first_run) -> None:
    cwd, _, record = first_run
    (folder,) = (cwd / "outputs" / "runs").iterdir()
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    points = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert all(len(p) >= 2 for p in points.values()), points  # no chart of a single point: each one draws

    # the run's figures, each a flat line over the run's steps under run/ (the record's values, as float32)
    training, inference, resources = record.training, record.inference, record.resources
    expected = {
        "test_acc": record.metrics.test_acc, "test_loss": record.metrics.test_loss,
        "train_samples_per_sec": training.steady.samples_per_sec, "train_seconds": training.seconds,
        "steady_samples_per_sec": training.steady.samples_per_sec,
        "overall_samples_per_sec": training.overall.samples_per_sec,
        "overall_flops_per_sec": training.overall.flops_per_sec,
        "inference_samples_per_sec": inference.samples_per_sec, "inference_latency_ms_p50": inference.latency_ms_p50,
        "inference_latency_ms_p90": inference.latency_ms_p90, "peak_host_rss_mb": resources.peak_host_rss_mb,
        "wall_seconds": record.wall_seconds,
    }  # fmt: skip
    for name, value in expected.items():
        assert points[f"run/{name}"] == [(0, pytest.approx(value, rel=1e-6)), (STEPS, pytest.approx(value, rel=1e-6))]
    assert not [t for t in points if t.startswith(("test/", "hp/", "resources/", "perf/overall", "perf/inf"))]
    assert {"train/loss", "val/acc", "perf/train_samples_per_sec", "perf/epoch_seconds"} <= points.keys()

    # HParams: one row, a metric column for every run/ figure, the knobs and hardware typed
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    run_tags = {t for t in points if t.startswith("run/")}
    assert run_tags <= {m.name.tag for m in experiment.metric_infos}
    assert sorted(h.name for h in experiment.hparam_infos if h.differs) == sorted(SHOWN_HPARAMS)
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    hparams = {name: value.WhichOneof("kind") for name, value in start.hparams.items()}
    assert hparams["channels_last"] == "bool_value" and start.hparams["channels_last"].bool_value is False
    assert start.hparams["batch_size"].string_value == "128"  # read as 128, not 128.00
    assert start.hparams["threads"].string_value == str(record.fingerprint.threads)
    assert start.hparams["lr"].number_value == pytest.approx(0.01)
    assert start.hparams["device"].string_value == the_device()
    assert start.hparams["hardware"].string_value == record.device_name
    noisy = start.hparams["noisy"].string_value  # the caveat beside a run's figures: why, or no
    assert (
        all(why in noisy for why in record.noise) if record.noise else noisy in ("no", f"unsteady: {record.unsteady}")
    )

    # Text: the summary line and every figure in one table
    (text,) = events.Tensors("Summary/text_summary")  # capitalised: above fingerprint and cpu_kernels
    table = text.tensor_proto.string_val[0].decode()
    assert record.summary() in table
    assert all(f"| {tag} | " in table for tag in run_tags)


def test_a_command_is_spelled_as_this_shell_finds_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hwbench.commands import command

    scripts = Path(sys.executable).parent
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", os.pathsep.join([str(scripts), path_without(scripts)]))  # an activated venv
    assert command("hwbench-compare") == "hwbench-compare" and command("tensorboard") == "tensorboard"
    monkeypatch.setenv("PATH", path_without(scripts))  # never activated: the venv's bin/
    assert command("hwbench-compare") == str(scripts / "hwbench-compare")
    # an interpreter with no scripts beside it (pip install --user puts them elsewhere): through python -m
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # this interpreter, elsewhere
    (bare / "python").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bare / "python"))
    line = command("hwbench-compare")
    assert line == "bin/python -m hwbench.compare"
    ran = in_shell(f"{line} --help", tmp_path, stdout=subprocess.PIPE)
    assert ran.communicate(timeout=120)[0].startswith("usage: hwbench-compare") and ran.returncode == 0


def test_help_spells_its_commands_as_this_shell_runs_them(tmp_path: Path) -> None:
    scripts = Path(sys.executable).parent
    env = {**os.environ, "PATH": path_without(scripts)}
    result = subprocess.run([sys.executable, "-m", "hwbench", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0
    examples = result.stdout.split("Examples")[1]
    commands = [line.strip() for line in examples.splitlines() if line.startswith("    ")]
    assert commands[0] == f"{sys.executable} -m hwbench"
    assert f"{scripts / 'hwbench-compare'} outputs/multiruns/<stamp>" in commands
    assert f"{scripts / 'tensorboard'} --logdir outputs" in commands
    assert "--out DIR chooses the report's folder" in examples
    for line in commands:  # each command's program runs as printed
        program = line.split(" -m ")[0] if " -m " in line else line.split()[0]
        version = "-c pass" if " -m " in line else "--help"
        ran = in_shell(f"{program} {version}", tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert ran.wait(timeout=120) == 0, line
