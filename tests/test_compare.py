"""``hwbench-compare`` on a real sweep (two short CPU runs that differ only in their thread count), and on
synthetic records at scale (benchmarks/compare_at_scale.py makes them, schema-valid)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import matplotlib.image
import pytest

from conftest import REPO, next_steps
from hwbench.compare.cli import main as compare
from hwbench.compare.plots import MAX_LINES, accuracy_figure, accuracy_plot, throughput_figure, throughput_plot
from hwbench.compare.reading import read_rows
from hwbench.compare.setups import group_setups
from hwbench.compare.tables import MAX_RUN_ROWS
from hwbench.record.results import ResultsRecord, read_record, write_record

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JOBS = ("0_ffnn_cpu_e2", "1_ffnn_cpu_e2")  # the sweep's job folders: device.threads=1, device.threads=2


@pytest.fixture(scope="module")
def sweep(data_root: str, tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    """One real sweep for the whole module (as conftest's hwbench_cli runs it): ~10 s of training."""
    root = tmp_path_factory.mktemp("bench")
    args = ["-m", "device=cpu", "device.threads=1,2", "epochs=2", "data.train_limit=3000", "arch=ffnn"]
    env = {**os.environ, "HWBENCH_DATA": data_root, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "hwbench", *args, f"output_root={root / 'outputs'}"]
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def as_if_quiet(folder: Path) -> None:
    """The runs' machine load as a quiet machine's: these runs share the machine with the other test worker, so
    they come out noisy, and compare never takes a noisy run as a baseline (tested in test_records). Here the
    speed-ups themselves are under test."""
    for path in folder.rglob("results.json"):
        record = json.loads(path.read_text())
        if record.get("machine_load"):
            record["machine_load"] |= {"others_cpu_percent": 0.0, "steal_percent": 0.0}
            path.write_text(json.dumps(record))


@pytest.fixture(scope="module")
def outputs(sweep: subprocess.CompletedProcess) -> Path:
    folder = Path(sweep.args[-1].removeprefix("output_root="))
    as_if_quiet(folder)
    return folder


def synthetic() -> ModuleType:
    """benchmarks/compare_at_scale.py, whose records are shaped as real sweeps leave them."""
    spec = importlib.util.spec_from_file_location("compare_at_scale", REPO / "benchmarks" / "compare_at_scale.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 synthetic records: three networks on CPUs, H100s and A100s, 1-4 devices, some runs without a result."""
    folder = tmp_path_factory.mktemp("many")
    synthetic().write_records(folder, 300)
    return folder


def compare_cli(*args: str, columns: int = 100) -> subprocess.CompletedProcess:
    """``python -m hwbench.compare`` as a user runs it, on a terminal ``columns`` wide (rich reads COLUMNS)."""
    env = {**os.environ, "COLUMNS": str(columns)}
    cmd = [sys.executable, "-m", "hwbench.compare", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def table_line(stdout: str, job: str) -> str:
    """The console table's row of one job (not the caption, which names the baseline's job too)."""
    (line,) = [line for line in stdout.splitlines() if job in line and line.startswith("│")]
    return line


def test_table_csv_markdown_and_plots_of_a_thread_sweep(outputs: Path, tmp_path: Path, capsys) -> None:
    report = tmp_path / "report"
    assert compare([str(outputs), "--out", str(report)]) == 0
    stdout = capsys.readouterr().out

    assert "speed-up" in stdout
    for job in JOBS:  # one row per job, each with its speed-up against the slowest
        assert re.search(r"\d+\.\d\dx", table_line(stdout, job)), table_line(stdout, job)
    assert "1.00x" in stdout
    assert str(report) in stdout  # says where the report went

    rows = read_csv(report / "compare.csv")
    assert len(rows) == 2
    expected = {"arch", "device", "host", "model", "threads", "precision", "batch_size", "epochs", "test_acc",
                "train_samples_per_sec", "train_basis", "epoch_seconds", "seconds_to_97", "mfu",
                "inference_samples_per_sec", "latency_ms_p50", "speedup", "status", "reason", "run_name"}  # fmt: skip
    assert expected <= rows[0].keys()
    assert sorted(r["threads"] for r in rows) == ["1", "2"]  # the hardware setup that tells the rows apart
    for row in rows:
        assert row["status"] == "ok" and row["arch"] == "ffnn" and row["train_basis"] == "steady"
        assert float(row["train_samples_per_sec"]) > 0 and float(row["inference_samples_per_sec"]) > 0
        assert 0.1 < float(row["test_acc"]) <= 1 and float(row["epoch_seconds"]) > 0
    assert min(float(r["speedup"]) for r in rows) == 1.0  # the default baseline: the slowest run

    markdown = (report / "compare.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert table[0].startswith("| arch |") and "speed-up" in table[0] and set(table[1]) <= set("|-: ")
    assert len(table) == 4 and all(job in markdown for job in JOBS)

    assert "| host |" in table[0] and "| results.json |" in table[0]  # every column with a value, not the console's
    for name in ("throughput.png", "accuracy_vs_time.png"):
        png = report / name
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        height, width, _ = matplotlib.image.imread(png).shape
        assert height > 200 and width > 400
        assert f"]({name})" in markdown
    # no runs differ in their device count: no scaling plot at all, rather than a blank one
    assert not (report / "scaling.png").exists() and "scaling" not in markdown and "scaling" not in stdout
    files = "compare.csv, compare.md, report.html, throughput.png, accuracy_vs_time.png, flops_vs_peak.png, "
    files += "rate_over_run.png"
    assert stdout.strip().splitlines()[-1].endswith(files)


def test_the_sweep_names_its_folder_and_the_commands_that_open_it(sweep, outputs: Path, tmp_path: Path) -> None:
    (folder,) = (outputs / "multiruns").iterdir()
    cwd = outputs.parent  # where the sweep ran
    where = os.path.relpath(folder, cwd)  # as the user would type it there
    assert sweep.stdout.strip().splitlines()[-3:] == [
        f"results in {where}",
        *next_steps(where, cwd),
    ]
    # the command it names works, from where the sweep ran
    result = subprocess.run([sys.executable, "-m", "hwbench.compare", where, "--out", str(tmp_path / "r")],
                            cwd=cwd, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0 and "2 records (2 ok, 0 without a result)" in result.stdout


def test_skipped_run_is_listed_and_a_broken_record_is_named(outputs: Path, tmp_path: Path, capsys) -> None:
    # results copied from another machine: a GPU job that found no GPU, and a record cut short in the copy
    other = tmp_path / "gpu_box"
    skipped = {
        "status": "skipped", "reason": "skipped: no CUDA device", "run_name": "ffnn_gpu_e2", "arch": "ffnn",
        "device": "gpu", "epochs": 2, "started": "2026-01-01T00:00:00+00:00", "config": {"batch_size": 128},
    }  # fmt: skip
    write_record(other / "multiruns" / "x" / "0_ffnn_gpu_e2", ResultsRecord.model_validate(skipped))
    broken = other / "multiruns" / "x" / "1_cnn_gpu_e2" / "results.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"status": "ok", "arch": "cn')

    assert compare([str(outputs), str(other), "--out", str(tmp_path / "report")]) == 0
    captured = capsys.readouterr()
    assert "Runs without a result" in captured.out
    line = table_line(captured.out, "0_ffnn_gpu_e2")
    assert "skipped" in line and "no CUDA device" in line
    (warning,) = captured.err.strip().splitlines()
    assert warning.startswith("warning:") and str(broken) in warning

    rows = {r["job"]: r for r in read_csv(tmp_path / "report" / "compare.csv")}
    assert rows.keys() == {*JOBS, "0_ffnn_gpu_e2"}
    assert rows["0_ffnn_gpu_e2"]["status"] == "skipped" and rows["0_ffnn_gpu_e2"]["reason"] == skipped["reason"]
    assert rows["0_ffnn_gpu_e2"]["train_samples_per_sec"] == "" and rows["0_ffnn_gpu_e2"]["speedup"] == ""


def test_baseline_names_the_row_that_gets_1x(outputs: Path, tmp_path: Path, capsys) -> None:
    records = {job: read_record(next(outputs.rglob(f"{job}/results.json"))) for job in JOBS}
    speed = {job: record.training.steady.samples_per_sec for job, record in records.items()}
    fast, slow = sorted(JOBS, key=speed.get, reverse=True)  # not the default baseline, which is the slowest

    assert compare([str(outputs), "--baseline", f"/{fast}/", "--out", str(tmp_path / "report")]) == 0
    stdout = capsys.readouterr().out
    assert "1.00x" in table_line(stdout, fast)
    rows = {r["job"]: r for r in read_csv(tmp_path / "report" / "compare.csv")}
    assert float(rows[fast]["speedup"]) == 1.0
    assert float(rows[slow]["speedup"]) == pytest.approx(speed[slow] / speed[fast])

    # both jobs are vm/cpu/ffnn_cpu_e2: a spec that fits both is refused, not resolved by chance
    assert compare([str(outputs), "--baseline", "ffnn_cpu_e2", "--out", str(tmp_path / "r2")]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("error: --baseline 'ffnn_cpu_e2' matches 2 ffnn runs of 2 epochs")


def test_user_mistakes_get_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    # through the real entry point, as a user types it
    result = subprocess.run([sys.executable, "-m", "hwbench.compare", str(empty)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: no results.json under {empty}: run python -m hwbench first"
    assert not (tmp_path / "outputs").exists()  # no empty report folder left behind

    assert compare([str(tmp_path / "nowhere")]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error == f"error: no such folder: {tmp_path / 'nowhere'}"

    failed = ResultsRecord(status="failed", reason="out of memory", arch="cnn")
    write_record(tmp_path / "records" / "job", failed)
    (tmp_path / "taken").write_text("a file, not a folder")
    assert compare([str(tmp_path / "records"), "--out", str(tmp_path / "taken")]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith(f"error: cannot write the report to {tmp_path / 'taken'}")


def test_the_default_table_fits_100_columns_and_cuts_no_cell(tmp_path: Path) -> None:
    synthetic().write_records(tmp_path / "records", 60)  # GPU rows too: long names, busy %, samples/J
    result = compare_cli(str(tmp_path / "records"), "--out", str(tmp_path / "report"), columns=100)
    assert result.returncode == 0, result.stderr
    *lines, summary = result.stdout.splitlines()  # the summary, a path in it, wraps as the terminal does
    assert max(map(len, lines)) <= 100 and summary.startswith("60 records")
    assert "…" not in result.stdout and "..." not in result.stdout
    header = next(line for line in lines if line.startswith("┃"))
    assert all(h in header for h in ("arch", "job", "test acc", "train samples/s", "speed-up"))
    words = " ".join(result.stdout.split())  # the caption wraps at the table's width
    assert re.search(r"not shown for width: execution, host, [^(]*\(--columns all shows every column", words)
    rows = [r for r in read_csv(tmp_path / "report" / "compare.csv") if r["status"] == "ok"]
    for row in rows:  # each cell whole, on its row's own line: the job, its accuracy, its speed
        line = table_line(result.stdout, f" {row['job']} ")
        assert f"{float(row['test_acc']):.4f}" in line and f"{float(row['train_samples_per_sec']):,.0f}" in line

    wide = compare_cli(str(tmp_path / "records"), "--out", str(tmp_path / "r2"), "--columns", "all", columns=1000)
    header = next(line for line in wide.stdout.splitlines() if line.startswith("┃"))
    assert wide.returncode == 0 and "not shown for width" not in wide.stdout
    assert all(f" {h} " in header for h in ("host", "peak RSS MB", "results.json", "infer samples/s", "GPU busy %"))
    assert " MFU " not in header  # no run has a figure for it
    picked = compare_cli(str(tmp_path / "records"), "--out", str(tmp_path / "r3"), "--columns", "arch,job,mfu")
    header = next(line for line in picked.stdout.splitlines() if line.startswith("┃"))
    assert [h.strip() for h in header.strip("┃").split("┃")] == ["arch", "job", "MFU"]
    typo = compare_cli(str(tmp_path / "records"), "--columns", "arch,speed")
    assert typo.returncode == 2 and len(typo.stderr.strip().splitlines()) == 1
    assert typo.stderr.startswith("error: --columns: no column 'speed': give 'all' or some of arch, job")


def test_at_scale_one_row_and_one_bar_per_setup(many: Path, tmp_path: Path) -> None:
    result = compare_cli(str(many), "--out", str(tmp_path / "report"))
    assert result.returncode == 0, result.stderr
    rows = read_rows([many])
    ok = [r for r in rows if r.status == "ok"]
    setups = group_setups(ok)
    assert len(ok) > MAX_RUN_ROWS and len(setups) < len(ok) / 2  # repeats: a setup holds several runs
    assert f"{len(ok):,} ok runs: one row per setup" in result.stdout
    body = [line for line in result.stdout.split("Runs without a result")[0].splitlines() if line.startswith("│ ")]
    assert len(body) == len(setups)
    assert len(read_csv(tmp_path / "report" / "compare.csv")) == len(rows) == 300  # the CSV keeps every run

    panels = throughput_plot(setups)
    figure = throughput_figure(panels)
    assert [p.arch for p in panels] == [ax.get_title(loc="left") for ax in figure.axes] == ["cnn", "ffnn", "speedrun"]
    for ax, panel in zip(figure.axes, panels, strict=True):  # one bar per setup of the panel's network
        mine = [s for s in setups if s.arch == panel.arch]
        assert len(ax.patches) == len(panel.bars) == len(mine) > 1
        assert [p.get_width() for p in ax.patches] == [s.train_samples_per_sec for s in mine]  # at its runs' median
        assert [(b.low, b.high) for b in panel.bars] == [(min(s.speeds), max(s.speeds)) for s in mine]
    lines = [line for line in accuracy_figure(accuracy_plot(setups)).axes[0].get_lines() if line.get_marker() == "o"]
    assert len(lines) == min(MAX_LINES, len(setups))
    for name in ("throughput.png", "accuracy_vs_time.png", "scaling.png"):  # 1, 2 and 4 devices: scaling too
        assert (tmp_path / "report" / name).read_bytes()[:8] == PNG_SIGNATURE


def test_worker_processes_read_the_same_rows_and_warnings(tmp_path: Path, capfd) -> None:
    synthetic().write_records(tmp_path, 120)  # 2 sweep folders of 100 and 20 jobs
    broken = tmp_path / "zz_broken" / "results.json"
    broken.parent.mkdir()
    broken.write_text('{"status": "ok", "arch": "cn')
    here = read_rows([tmp_path], processes=1)  # every record read in this process
    here_err = capfd.readouterr().err
    (warning,) = here_err.splitlines()
    assert warning.startswith(f"warning: skipping {broken}: not readable JSON")
    workers = read_rows([tmp_path, tmp_path / "multiruns"], processes=3)  # a folder given twice: read once
    assert workers == here and len(here) == 120
    assert capfd.readouterr().err == here_err


def test_a_report_without_ok_runs_draws_no_plot(tmp_path: Path, capsys) -> None:
    write_record(tmp_path / "runs" / "job", ResultsRecord(status="failed", reason="out of memory", arch="cnn"))
    assert compare([str(tmp_path / "runs"), "--out", str(tmp_path / "report")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("1 record (0 ok, 1 without a result)")  # one record, not "1 records"
    assert last.endswith("compare.csv, compare.md, report.html")
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["compare.csv", "compare.md", "report.html"]


def caption_lines(stdout: str, start: str) -> list[str]:
    """The caption's lines that start with ``start`` (a caption line wraps at the table's width)."""
    return [line for line in stdout.splitlines() if line.lstrip().startswith(start)]


def test_one_run_per_network_gets_no_speed_up(outputs: Path, tmp_path: Path, capsys) -> None:
    one = tmp_path / "one"
    shutil.copytree(next(outputs.rglob(f"{JOBS[0]}/results.json")).parent, one / JOBS[0])
    assert compare([str(one), "--out", str(tmp_path / "report")]) == 0
    stdout = capsys.readouterr().out
    assert "speed-up" not in stdout and "x " not in table_line(stdout, JOBS[0])  # nothing to compare against
    (row,) = read_csv(tmp_path / "report" / "compare.csv")
    assert row["speedup"] == ""
    assert "speed-up" not in (tmp_path / "report" / "compare.md").read_text()

    setups = group_setups([r for r in read_rows([one]) if r.status == "ok"])
    throughput = throughput_figure(throughput_plot(setups))
    assert throughput.get_suptitle() == "Training throughput"  # no whisker, no orange bar: no key for them
    assert throughput.axes[0].get_xlabel() == "training samples/s"
    assert not throughput.axes[0].lines and not throughput.axes[0].collections  # a bar, no whisker cap
    accuracy = accuracy_figure(accuracy_plot(setups)).axes[0]
    assert "band" not in accuracy.get_title() and "median" not in accuracy.get_xlabel()


@pytest.fixture(scope="module")
def one_epoch(data_root: str, sweep, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A third real run of the sweep's network and machine, one epoch long."""
    root = tmp_path_factory.mktemp("e1")
    env = {**os.environ, "HWBENCH_DATA": data_root}
    args = ["device=cpu", "device.threads=2", "epochs=1", "data.train_limit=3000", "arch=ffnn", f"output_root={root}"]
    result = subprocess.run([sys.executable, "-m", "hwbench", *args], cwd=root, env=env, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    as_if_quiet(root)
    return root


def test_runs_of_other_lengths_are_not_compared(outputs: Path, one_epoch: Path, tmp_path: Path) -> None:
    result = compare_cli(str(outputs), str(one_epoch), "--out", str(tmp_path / "report"), columns=200)
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("┃"))
    assert " epochs " in header  # shown by default: the network's runs differ in their length
    rows = {r["job"]: r for r in read_csv(tmp_path / "report" / "compare.csv")}
    (single,) = [job for job in rows if job not in JOBS]
    assert rows[single]["epochs"] == "1" and rows[single]["speedup"] == ""  # alone at its length
    assert sorted(float(rows[job]["speedup"]) for job in JOBS)[0] == 1.0  # the two 2-epoch runs, compared
    assert re.search(r"\b2\s*│", table_line(result.stdout, JOBS[0]))  # its epochs cell
    words = " ".join(result.stdout.split())
    assert "speed-up: training samples/s over those of the slowest run of the same network and epochs (ffnn, 2 " \
           "epochs: job " in words  # fmt: skip
    assert "ffnn, 1 epoch:" not in words and "1 epochs" not in words


def test_a_caption_goes_with_its_column(outputs: Path, tmp_path: Path) -> None:
    wide = compare_cli(str(outputs), "--out", str(tmp_path / "r1"), columns=200)
    assert caption_lines(wide.stdout, "speed-up: training samples/s over those of the slowest run of the same "
                                      "network (ffnn: job ")  # fmt: skip
    narrow = compare_cli(str(outputs), "--out", str(tmp_path / "r2"), columns=60)
    assert narrow.returncode == 0, narrow.stderr
    header = next(line for line in narrow.stdout.splitlines() if line.startswith("┃"))
    words = " ".join(narrow.stdout.split())
    assert "speed-up" not in header and re.search(r"not shown for width: [^(]*speed-up", words)
    assert not caption_lines(narrow.stdout, "speed-up:")  # no caption for a column left out
    assert "Speed-up: training samples/s" in (tmp_path / "r2" / "compare.md").read_text()  # every column there
