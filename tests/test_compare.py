"""``hwbench-compare`` on a real sweep (short CPU runs that differ only in their thread count, three repeats each),
on records made from its real ones with speeds drawn from known distributions, and on synthetic records at scale
(benchmarks/compare_at_scale.py makes them, schema-valid)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import matplotlib.image
import pytest
from filelock import FileLock

from conftest import REPO, as_if_quiet, next_steps
from hwbench.compare.cli import main as compare
from hwbench.compare.plots import MAX_LINES, accuracy_figure, accuracy_plot, throughput_figure, throughput_plot
from hwbench.compare.reading import read_rows
from hwbench.compare.rows import Row
from hwbench.compare.setups import group_setups
from hwbench.compare.tables import MAX_RUN_ROWS
from hwbench.compare.verdicts import add_verdicts
from hwbench.record.results import ResultsRecord, read_record, write_record

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
Ran = subprocess.CompletedProcess
REPEATS = 3
# the sweep's job folders, in the order they started: device.threads=1, 2, 1, 2, 1, 2 (repeats interleaved)
JOBS = tuple(f"{k}_ffnn_cpu_e2_r{k // 2 + 1}" for k in range(2 * REPEATS))


def shared_sweep(data_root: str, tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    """One real sweep (as conftest's hwbench_cli runs it): six short jobs, made once a session and shared by
    pytest-xdist's workers (their basetemps share a parent) and by test_report, its records then made quiet
    (``as_if_quiet``)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "compare-sweep"
    with FileLock(f"{root}.lock"):
        if not (root / "sweep.json").exists():
            root.mkdir(parents=True, exist_ok=True)
            args = ["-m", "arch=ffnn", "device.threads=1,2", f"repeats={REPEATS}", "epochs=2", "data.train_limit=3000",
                    "device=cpu"]  # fmt: skip
            env = {**os.environ, "HWBENCH_DATA": data_root, "PYTHONUNBUFFERED": "1"}
            cmd = [sys.executable, "-m", "hwbench", *args, f"output_root={root / 'outputs'}"]
            result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, result.stderr[-2000:]
            as_if_quiet(root / "outputs")
            (root / "sweep.json").write_text(json.dumps({"args": cmd, "stdout": result.stdout}))
    saved = json.loads((root / "sweep.json").read_text())
    return subprocess.CompletedProcess(saved["args"], 0, saved["stdout"], "")


@pytest.fixture(scope="module")
def sweep(data_root: str, tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    return shared_sweep(data_root, tmp_path_factory)


def sweep_outputs(sweep: subprocess.CompletedProcess) -> Path:
    return Path(sweep.args[-1].removeprefix("output_root="))


@pytest.fixture(scope="module")
def outputs(sweep: subprocess.CompletedProcess) -> Path:
    return sweep_outputs(sweep)


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


@pytest.fixture
def compare_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    """``hwbench-compare ARGS`` on a terminal ``columns`` wide (rich reads COLUMNS), through the command's entry point
    in this process: its own code, less an interpreter's start (the command itself, as a user types it, runs in
    test_user_mistakes_get_one_line_and_exit_2 and test_the_sweep_names_its_folder_and_the_commands_that_open_it)."""

    def run(*args: str, columns: int = 100) -> Ran:
        monkeypatch.setenv("COLUMNS", str(columns))
        capsys.readouterr()
        try:
            code = compare(list(args))
        except SystemExit as ended:  # as the command's process would end
            code = ended.code if isinstance(ended.code, int) else 1
        finally:
            monkeypatch.delenv("COLUMNS")
        out, err = capsys.readouterr()
        return Ran(["hwbench-compare", *args], code, out, err)

    return run


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def table_line(stdout: str, job: str) -> str:
    """The console table's row of one job (not the caption, which names the baseline's job too)."""
    (line,) = [line for line in stdout.splitlines() if job in line and line.startswith("│")]
    return line


def test_a_sweep_with_repeats_runs_them_interleaved_each_in_its_process(sweep, outputs: Path) -> None:
    (folder,) = (outputs / "multiruns").iterdir()
    records = {job: read_record(folder / job / "results.json") for job in JOBS}  # the folders as the jobs started
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(JOBS)
    for k, (job, record) in enumerate(records.items()):
        assert record.status == "ok" and record.repeat == k // 2 + 1 and job.endswith(f"_r{record.repeat}")
        assert record.config["device"]["threads"] == 1 + k % 2  # point 1, point 2, point 1 again...
        assert record.job.shared is None  # a fresh process of its own
        stability = record.training.stability  # the steady epoch timed in sub-windows
        assert len(stability.window_rates) == 5 and sum(stability.window_steps) == 24  # 3,000 images at batch 128
        assert stability.iqr_over_median >= 0 and record.inference.blocks >= 5
        assert record.machine_load.canary_before_gflops > 0 and record.machine_load.canary_after_gflops > 0
    assert len({r.job.pid for r in records.values()}) == len(JOBS)
    # the sweep ends with how many runs counted, each network's fastest setup against the next, and its time
    lines = sweep.stdout.strip().splitlines()
    assert lines[-3].startswith(f"{len(JOBS)} runs, {len(JOBS)} ok"), lines[-4:]
    assert lines[-2].startswith("ffnn: "), lines[-2]  # its fastest setup; or why there is no verdict (a busy CI)
    assert lines[-1].startswith("time: ") and f" for {len(JOBS)} job(s): starting " in lines[-1]


def test_setups_with_intervals_and_a_verdict(outputs: Path, tmp_path: Path, capsys) -> None:
    report = tmp_path / "report"
    assert compare([str(outputs), "--out", str(report)]) == 0
    stdout = capsys.readouterr().out

    setups = read_csv(report / "setups.csv")
    expected = {"runs", "median_samples_per_sec", "ci_low", "ci_high", "speedup", "speedup_ci_low", "speedup_ci_high",
                "verdict", "p_value", "iqr_over_median", "left_out", "hardware"}  # fmt: skip
    assert len(setups) == 2 and expected <= setups[0].keys()
    base, other = sorted(setups, key=lambda r: r["verdict"] != "baseline")
    assert base["verdict"] == "baseline" and float(base["speedup"]) == 1.0 and base["speedup_ci_low"] == ""
    assert ", 1 thr" in base["hardware"]  # a threads sweep on one machine: against its smallest setup
    assert float(other["speedup_ci_low"]) <= float(other["speedup"]) <= float(other["speedup_ci_high"])
    assert (float(other["speedup_ci_low"]) > 1.02) == (other["verdict"] == "faster")
    assert (float(other["speedup_ci_high"]) < 0.98) == (other["verdict"] == "slower")
    for row in setups:
        assert row["runs"] == str(REPEATS) and row["left_out"] == ""
        assert float(row["ci_low"]) <= float(row["median_samples_per_sec"]) <= float(row["ci_high"])
    assert {", 1 thr" in r["hardware"] for r in setups} == {True, False}  # the threads tell the setups apart
    # the same records always give the same report: the bootstrap is seeded by what it resamples
    assert compare([str(outputs), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "setups.csv").read_text() == (report / "setups.csv").read_text()

    assert "hwbench setups" in stdout and "hwbench runs" in stdout  # the setups first, then each run
    assert stdout.index("hwbench setups") < stdout.index("hwbench runs")
    words = " ".join(stdout.split())
    assert re.search(r"trains the ffnn \d+% (faster|slower) than|no clear difference between", words)
    assert str(report) in stdout  # says where the report went

    rows = read_csv(report / "compare.csv")
    assert len(rows) == len(JOBS) and {r["repeat"] for r in rows} == {"1", "2", "3"}
    run_keys = {"arch", "device", "host", "model", "threads", "precision", "batch_size", "epochs", "test_acc",
                "train_samples_per_sec", "train_basis", "epoch_seconds", "seconds_to_97", "mfu",
                "inference_samples_per_sec", "latency_ms_p50", "unsteady", "status", "reason", "run_name"}  # fmt: skip
    assert run_keys <= rows[0].keys() and "speedup" not in rows[0]  # speed-ups are between setups only
    for row in rows:
        assert row["status"] == "ok" and row["arch"] == "ffnn" and row["train_basis"] == "steady"
        assert float(row["train_samples_per_sec"]) > 0 and float(row["inference_samples_per_sec"]) > 0
        assert 0.1 < float(row["test_acc"]) <= 1 and float(row["epoch_seconds"]) > 0

    markdown = (report / "compare.md").read_text()
    assert markdown.index("## Setups") < markdown.index("## Runs")
    table = [line for line in markdown.split("## Runs")[0].splitlines() if line.startswith("|")]
    assert table[0].startswith("| arch | source | hardware |") and "verdict" in table[0] and len(table) == 2 + 2
    assert "| results.json |" in markdown  # the runs' table: every column with a value, not the console's
    for name in ("throughput.png", "accuracy_vs_time.png"):
        png = report / name
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        height, width, _ = matplotlib.image.imread(png).shape
        assert height > 200 and width > 400
        assert f"]({name})" in markdown
    # a threads sweep: its scaling plot (test_a_threads_sweep_scales_from_1_thread checks its figures)
    assert "](scaling.png)" in markdown and "scaling eff." in markdown
    files = "setups.csv, compare.csv, compare.md, report.html, throughput.png, accuracy_vs_time.png, "
    files += "scaling.png, flops_vs_peak.png, rate_over_run.png"
    assert stdout.strip().splitlines()[-1].endswith(files)


def test_the_sweep_names_its_folder_and_the_commands_that_open_it(sweep, outputs: Path, tmp_path: Path) -> None:
    (folder,) = (outputs / "multiruns").iterdir()
    cwd = outputs.parent  # where the sweep ran
    where = os.path.relpath(folder, cwd)  # as the user would type it there
    assert sweep.stdout.strip().splitlines()[-6:-3] == [
        f"results in {where}",
        *next_steps(where, cwd),
    ]
    # the command it names works, from where the sweep ran
    result = subprocess.run([sys.executable, "-m", "hwbench.compare", where, "--out", str(tmp_path / "r")],
                            cwd=cwd, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0 and f"{len(JOBS)} records ({len(JOBS)} ok, 0 without a result)" in result.stdout


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
    assert rows["0_ffnn_gpu_e2"]["train_samples_per_sec"] == ""
    assert len(read_csv(tmp_path / "report" / "setups.csv")) == 2  # a run without a result is in no setup


def test_baseline_names_the_setup_that_gets_1x(outputs: Path, tmp_path: Path, capsys) -> None:
    one_thread = JOBS[0]  # device.threads=1: named, whether or not it is the slowest setup
    assert compare([str(outputs), "--baseline", f"/{one_thread}/", "--out", str(tmp_path / "report")]) == 0
    setups = {r["hardware"].endswith(", 1 thr"): r for r in read_csv(tmp_path / "report" / "setups.csv")}
    assert setups[True]["verdict"] == "baseline" and float(setups[True]["speedup"]) == 1.0
    medians = {k: float(r["median_samples_per_sec"]) for k, r in setups.items()}
    assert float(setups[False]["speedup"]) == pytest.approx(medians[False] / medians[True])
    capsys.readouterr()

    # every job is vm/cpu/ffnn_cpu_e2: a spec that fits both setups is refused, not resolved by chance
    assert compare([str(outputs), "--baseline", "ffnn_cpu_e2", "--out", str(tmp_path / "r2")]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("error: --baseline 'ffnn_cpu_e2' matches runs of 2 ffnn setups of 2 epochs")


def drawn(real: Row, hardware: str, speeds: list[float], noisy: str | None = None) -> list[Row]:
    """Runs of a setup made from a real row: ``speeds`` drawn from a known distribution."""
    return [replace(real, hardware=hardware, train_samples_per_sec=v, noisy=noisy, job=f"{hardware}-{i}")
            for i, v in enumerate(speeds)]  # fmt: skip


def verdict(rows: list[Row]) -> str | None:
    """The verdict of the setup that is not the baseline (there are two)."""
    setups = group_setups(rows)
    add_verdicts(setups, None)
    (other,) = [s for s in setups if s.verdict != "baseline"]
    return other.verdict


@pytest.fixture(scope="module")
def real_row(outputs: Path) -> Row:
    return next(r for r in read_rows([outputs]) if r.status == "ok")


def test_the_same_distribution_reads_no_clear_difference(real_row: Row) -> None:
    rng = random.Random(37)
    verdicts = [verdict(drawn(real_row, "CPU-A", [rng.gauss(20_000, 2_000) for _ in range(8)])
                        + drawn(real_row, "CPU-B", [rng.gauss(20_000, 2_000) for _ in range(8)]))
                for _ in range(100)]  # fmt: skip
    assert verdicts.count("no clear difference") >= 95, verdicts


def test_a_real_difference_reads_faster(real_row: Row) -> None:
    rng = random.Random(38)
    verdicts = [verdict(drawn(real_row, "CPU-A", [rng.gauss(20_000, 600) for _ in range(5)])
                        + drawn(real_row, "CPU-B", [rng.gauss(23_000, 690) for _ in range(5)]))
                for _ in range(100)]  # fmt: skip
    assert verdicts.count("faster") >= 95, verdicts
    assert verdict(drawn(real_row, "CPU-A", [20_000.0]) + drawn(real_row, "CPU-B", [30_000.0])) == "too few runs"


def test_noisy_runs_move_no_median(outputs: Path, tmp_path: Path, capsys) -> None:
    """Three more runs of the 1-thread setup at a tenth of its speed, timed on a busy machine: listed, never counted."""
    quiet = tmp_path / "runs"
    shutil.copytree(outputs, quiet)
    assert compare([str(quiet), "--out", str(tmp_path / "before")]) == 0
    for k, job in enumerate(JOBS[:6:2]):
        record = json.loads((quiet / "multiruns").glob(f"*/{job}/results.json").__next__().read_text())
        record["training"]["steady"]["samples_per_sec"] /= 10
        record["machine_load"]["others_cpu_percent"] = 61.0
        write_record(tmp_path / "busy" / f"busy{k}", ResultsRecord.model_validate(record))
    # copies of the same machine's runs in a folder of their own: one source with --merge-sources
    assert compare([str(quiet), str(tmp_path / "busy"), "--merge-sources", "--out", str(tmp_path / "after")]) == 0
    before, after = (read_csv(tmp_path / name / "setups.csv") for name in ("before", "after"))
    key = ("runs", "median_samples_per_sec", "ci_low", "ci_high", "speedup", "verdict")
    assert [{k: r[k] for k in key} for r in after] == [{k: r[k] for k in key} for r in before]
    assert sorted(r["left_out"] for r in after) == ["", "3 noisy"]
    stdout = capsys.readouterr().out
    assert "noisy" in stdout and "never counted in a setup's figures" in " ".join(stdout.split())
    # the plots mark them: beside the setup they were left out of, or, a folder of their own, as not counted
    merged = group_setups(read_rows([quiet, tmp_path / "busy"]), by_source=False)
    labels = [b.label for panel in throughput_plot(merged) for b in panel.bars]  # type: ignore[union-attr]
    assert sum(label.endswith("[+3 noisy left out]") for label in labels) == 1
    alone = group_setups(read_rows([quiet, tmp_path / "busy"]))
    (bar,) = [b for panel in throughput_plot(alone) for b in panel.bars if b.noisy]  # type: ignore[union-attr]
    assert bar.label.endswith("[3 noisy: not counted]") and bar.runs == 0
    (line,) = [line for line in accuracy_plot(alone).lines if line.noisy]  # type: ignore[union-attr]
    assert line.label.endswith("[3 noisy: not counted]")


def test_user_mistakes_get_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    # through the real entry point, as a user types it
    result = subprocess.run([sys.executable, "-m", "hwbench.compare", str(empty)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    said = re.fullmatch(rf"error: no results\.json under {re.escape(str(empty))}: run (\S+) -m hwbench first",
                        result.stderr.strip())  # fmt: skip
    assert said and (shutil.which(said[1]) or (tmp_path / said[1]).is_file())  # this interpreter, as the shell has it
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


def test_the_default_table_fits_100_columns_and_cuts_no_cell(tmp_path: Path, compare_cli) -> None:
    synthetic().write_records(tmp_path / "records", 60)  # GPU rows too: long names, busy %, samples/J
    result = compare_cli(str(tmp_path / "records"), "--out", str(tmp_path / "report"), columns=100)
    assert result.returncode == 0, result.stderr
    *lines, summary = result.stdout.splitlines()  # the summary, a path in it, wraps as the terminal does
    assert max(map(len, lines)) <= 100 and summary.startswith("60 records")
    assert "…" not in result.stdout and "..." not in result.stdout
    setups_header, runs_header = [line for line in lines if line.startswith("┃")][:2]
    # what tells the rows of a network apart comes first (these GPUs ran other precisions, executions, batches),
    # then the speed: the figures beyond are named as not shown
    varying = ("arch", "hardware", "execution", "precision", "batch", "train samples/s")
    assert all(f" {h} " in setups_header for h in (*varying, "runs"))
    assert all(f" {h} " in runs_header for h in (*varying, "host"))
    words = " ".join(result.stdout.split())  # the caption wraps at the table's width
    assert re.search(r"not shown for width: [^(]*speed-up, [^(]*\(--columns all shows every column", words)
    assert re.search(r"not shown for width: [^(]*job, [^(]*\(--columns all shows every column", words)
    rows = [r for r in read_csv(tmp_path / "report" / "compare.csv") if r["status"] == "ok"]
    cells = [line for line in lines if line.startswith("│")]
    for row in rows:  # each cell whole, on a line of its own: its speed
        speed = re.escape(f"{float(row['train_samples_per_sec']):,.0f}")
        assert any(re.search(rf" {speed}(?![\d,])", line) for line in cells), row

    wide = compare_cli(str(tmp_path / "records"), "--out", str(tmp_path / "r2"), "--columns", "all", columns=1000)
    header = [line for line in wide.stdout.splitlines() if line.startswith("┃")][1]  # the runs' table
    assert wide.returncode == 0 and "not shown for width" not in wide.stdout
    assert all(f" {h} " in header for h in ("host", "peak RSS MB", "results.json", "infer samples/s", "GPU busy %"))
    assert " MFU " not in header  # no run has a figure for it
    picked = compare_cli(str(tmp_path / "records"), "--out", str(tmp_path / "r3"), "--columns", "arch,job,mfu")
    headers = [line for line in picked.stdout.splitlines() if line.startswith("┃")]
    assert [h.strip() for h in headers[1].strip("┃").split("┃")] == ["arch", "job", "MFU"]
    assert [h.strip() for h in headers[0].strip("┃").split("┃")] == ["arch", "MFU"]  # the setups' own
    typo = compare_cli(str(tmp_path / "records"), "--columns", "arch,speed")
    assert typo.returncode == 2 and len(typo.stderr.strip().splitlines()) == 1
    assert typo.stderr.startswith("error: --columns: no column 'speed': give 'all' or some of arch, source, job")


def test_at_scale_one_row_and_one_bar_per_setup(many: Path, tmp_path: Path, compare_cli) -> None:
    result = compare_cli(str(many), "--out", str(tmp_path / "report"))
    assert result.returncode == 0, result.stderr
    rows = read_rows([many])
    ok = [r for r in rows if r.status == "ok"]
    setups = group_setups(ok)
    assert len(ok) > MAX_RUN_ROWS and len(setups) < len(ok) / 2  # repeats: a setup holds several runs
    assert "hwbench runs" not in result.stdout  # too many to list: compare.csv has them
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
        whiskers = [(s.ci_low, s.ci_high) if s.interval else (s.median_samples_per_sec,) * 2 for s in mine]
        assert [(b.low, b.high) for b in panel.bars] == whiskers  # too few runs for an interval: no whisker
        assert all(s.ci_low <= s.train_samples_per_sec <= s.ci_high for s in mine if s.interval)
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
    assert last.endswith("setups.csv, compare.csv, compare.md, report.html")
    files = ["compare.csv", "compare.md", "report.html", "setups.csv"]
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == files


def caption_lines(stdout: str, start: str) -> list[str]:
    """The caption's lines that start with ``start`` (a caption line wraps at the table's width)."""
    return [line for line in stdout.splitlines() if line.lstrip().startswith(start)]


def test_one_run_per_network_gets_no_speed_up(outputs: Path, tmp_path: Path, capsys) -> None:
    one = tmp_path / "one"
    shutil.copytree(next(outputs.rglob(f"{JOBS[0]}/results.json")).parent, one / JOBS[0])
    assert compare([str(one), "--out", str(tmp_path / "report")]) == 0
    stdout = capsys.readouterr().out
    assert "speed-up" not in stdout and "verdict" not in stdout  # nothing to compare against
    (setup,) = read_csv(tmp_path / "report" / "setups.csv")
    assert setup["runs"] == "1" and setup["speedup"] == setup["verdict"] == setup["ci_low"] == ""
    assert "speed-up" not in (tmp_path / "report" / "compare.md").read_text()

    setups = group_setups([r for r in read_rows([one]) if r.status == "ok"])
    throughput = throughput_figure(throughput_plot(setups))
    assert throughput.get_suptitle() == "Training throughput"  # no whisker, no orange bar: no key for them
    assert throughput.axes[0].get_xlabel() == "training samples/s"
    assert not throughput.axes[0].lines and not throughput.axes[0].collections  # a bar, no whisker cap
    accuracy = accuracy_figure(accuracy_plot(setups)).axes[0]
    assert "band" not in accuracy.get_title() and "median" not in accuracy.get_xlabel()


@pytest.fixture(scope="module")
def one_epoch(outputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the sweep's network and machine one epoch long: its 2-thread job's record cut to its first epoch
    (compare knows a run's length from its record alone; a real run of its own would cost a process)."""
    root = tmp_path_factory.mktemp("e1")
    record = json.loads(next(outputs.rglob(f"{JOBS[1]}/results.json")).read_text())
    record["training"]["epochs"] = record["training"]["epochs"][:1]
    record["epochs"] = record["config"]["epochs"] = 1
    record["run_name"] = record["config"]["run_name"] = "ffnn_cpu_e1"
    write_record(root / "runs" / "ffnn_cpu_e1", ResultsRecord.model_validate(record))
    return root


def test_runs_of_other_lengths_are_not_compared(outputs: Path, one_epoch: Path, tmp_path: Path, compare_cli) -> None:
    result = compare_cli(str(outputs), str(one_epoch), "--out", str(tmp_path / "report"), columns=200)
    assert result.returncode == 0, result.stderr
    headers = [line for line in result.stdout.splitlines() if line.startswith("┃")]
    assert all(" epochs " in h for h in headers[:2])  # shown by default: the network's runs differ in their length
    setups = {r["epochs"]: r for r in read_csv(tmp_path / "report" / "setups.csv") if r["epochs"] == "1"}
    assert setups["1"]["speedup"] == ""  # alone at its length
    two = [r for r in read_csv(tmp_path / "report" / "setups.csv") if r["epochs"] == "2"]
    assert 1.0 in [float(r["speedup"]) for r in two]  # the two 2-epoch setups, compared
    assert re.search(r"\b2\s*│", table_line(result.stdout, JOBS[0]))  # its epochs cell
    words = " ".join(result.stdout.split())
    assert re.search(r"speed-up: the setup's median over that of the baseline \([^)]*\) of the same network and "
                     r"epochs \(ffnn, 2 epochs: ", words)  # fmt: skip
    assert "ffnn, 1 epoch:" not in words and "1 epochs" not in words


def test_a_caption_goes_with_its_column(outputs: Path, tmp_path: Path, compare_cli) -> None:
    wide = compare_cli(str(outputs), "--out", str(tmp_path / "r1"), columns=250)
    assert caption_lines(wide.stdout, "speed-up: the setup's median over that of the baseline (a sweep of threads")
    narrow = compare_cli(str(outputs), "--out", str(tmp_path / "r2"), columns=60)
    assert narrow.returncode == 0, narrow.stderr
    header = next(line for line in narrow.stdout.splitlines() if line.startswith("┃"))
    words = " ".join(narrow.stdout.split())
    assert "speed-up" not in header and re.search(r"not shown for width: [^(]*speed-up", words)
    assert not caption_lines(narrow.stdout, "speed-up:")  # no caption for a column left out
    assert "Speed-up: the setup's median" in (tmp_path / "r2" / "compare.md").read_text()  # every column there


def test_interval_widths_reads_a_sweep_by_its_first_repeats(outputs: Path) -> None:
    (folder,) = (outputs / "multiruns").iterdir()
    script = REPO / "benchmarks" / "interval_widths.py"
    result = subprocess.run([sys.executable, str(script), "--sweep", str(folder), "--counts", "2", "3"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("CPU: ")  # every table names its CPU
    table = json.loads(result.stdout.strip().splitlines()[-1])["interval_widths"]
    assert [(e["repeats"], e["runs"]) for e in table] == [(2, 2), (2, 2), (3, 3), (3, 3)]
    assert all(e["ci_width"] is None for e in table[:2])  # too few runs for an interval
    assert all(e["ci_width"] > 0 for e in table[2:]) and {e["verdict"] for e in table[:2]} == {
        "baseline",
        "too few runs",
    }


def copy_jobs(outputs: Path, to: Path, threads: int, edit: dict | None = None) -> Path:
    """The sweep's jobs of ``threads`` threads copied to ``to``; ``edit`` changes the copies' precision."""
    (folder,) = (outputs / "multiruns").iterdir()
    for job in JOBS[threads - 1 :: 2]:
        shutil.copytree(folder / job, to / job)
        if edit:
            record = json.loads((to / job / "results.json").read_text())
            record["fingerprint"]["precision"] = record["config"]["device"]["precision"] = edit["precision"]
            (to / job / "results.json").write_text(json.dumps(record))
    return to


def header_cells(line: str) -> list[str]:
    return [h.strip() for h in line.strip("┃").split("┃")]


def test_two_folders_of_one_hardware_stay_two_sources(outputs: Path, tmp_path: Path, monkeypatch, compare_cli) -> None:
    monkeypatch.chdir(tmp_path)  # the folders as a user names them: laptop, server
    copy_jobs(outputs, tmp_path / "laptop", threads=2)
    copy_jobs(outputs, tmp_path / "server", threads=2)  # the same host, CPU and threads: the same hardware string
    result = compare_cli("laptop", "server/", "--baseline", "laptop", "--out", "report", columns=100)
    assert result.returncode == 0, result.stderr
    setups = read_csv(tmp_path / "report" / "setups.csv")
    assert [s["source"] for s in setups] == ["laptop", "server"] and len({s["hardware"] for s in setups}) == 1
    assert setups[0]["verdict"] == "baseline"
    runs = read_csv(tmp_path / "report" / "compare.csv")
    assert sorted(r["source"] for r in runs) == ["laptop"] * 3 + ["server"] * 3
    lines = result.stdout.splitlines()
    headers = [header_cells(line) for line in lines if line.startswith("┃")]
    assert all(h[:2] == ["arch", "source"] for h in headers)  # what tells the rows apart, beside the network
    assert sum(line.startswith("│") and " laptop " in line for line in lines) == 1 + 3  # a setup, its runs
    words = " ".join(result.stdout.split())  # the caption names the baseline by its folder
    assert re.search(r"speed-up: [^;]*\(ffnn: laptop: [^)]*2 thr\)", words), words
    markdown = (tmp_path / "report" / "compare.md").read_text()
    assert "| ffnn | laptop |" in markdown and "| ffnn | server |" in markdown
    assert "laptop" in (tmp_path / "report" / "report.html").read_text()
    rows = read_rows(["laptop", "server"])
    labels = [b.label for panel in throughput_plot(group_setups(rows)) for b in panel.bars]  # type: ignore[union-attr]
    assert len(labels) == 2 and labels[0].startswith("laptop: ") and labels[1].startswith("server: ")

    merged = compare_cli("laptop", "server", "--merge-sources", "--out", "merged")  # the nodes of one cluster
    assert merged.returncode == 0, merged.stderr
    (setup,) = read_csv(tmp_path / "merged" / "setups.csv")
    assert setup["runs"] == "6" and setup["source"] == ""


def test_a_threads_sweep_scales_from_1_thread_and_a_precision_sweep_shows_its_precisions(
    outputs: Path, tmp_path: Path, compare_cli
) -> None:
    threads = compare_cli(str(outputs), "--out", str(tmp_path / "threads"), columns=100)
    assert threads.returncode == 0, threads.stderr
    headers = [header_cells(line) for line in threads.stdout.splitlines() if line.startswith("┃")]
    assert all("hardware" in h for h in headers)  # 1 thr and 2 thr: the column that differs is on screen
    assert "scale-up" in headers[1] and "scaling eff." in headers[1]
    setups = {s["hardware"].rsplit(", ", 1)[1]: s for s in read_csv(tmp_path / "threads" / "setups.csv")}
    assert setups["1 thr"]["verdict"] == "baseline"  # the smallest setup, whichever was slower
    runs = read_csv(tmp_path / "threads" / "compare.csv")
    ones = [float(r["train_samples_per_sec"]) for r in runs if r["threads"] == "1"]
    for r in runs:  # against the 1-thread runs' median; the ideal is twice that at 2 threads (2 cores used)
        speedup = float(r["train_samples_per_sec"]) / sorted(ones)[1]
        assert float(r["scaling_speedup"]) == pytest.approx(speedup)
        used = min(int(r["threads"]), len(os.sched_getaffinity(0)))
        assert float(r["scaling_efficiency"]) == pytest.approx(speedup / used)
    assert (tmp_path / "threads" / "scaling.png").read_bytes()[:8] == PNG_SIGNATURE

    copy_jobs(outputs, tmp_path / "sweep", threads=2)
    copy_jobs(outputs, tmp_path / "sweep" / "bf16", threads=2, edit={"precision": "bf16-mixed"})
    precision = compare_cli(str(tmp_path / "sweep"), "--out", str(tmp_path / "precision"), columns=100)
    assert precision.returncode == 0, precision.stderr
    lines = precision.stdout.splitlines()
    headers = [header_cells(line) for line in lines if line.startswith("┃")]
    assert all(h[:2] == ["arch", "precision"] for h in headers)
    assert "not shown for width: precision" not in " ".join(precision.stdout.split())
    assert sum(" bf16-mixed " in line for line in lines if line.startswith("│")) == 1 + 3
