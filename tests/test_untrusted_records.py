"""Records copied from other machines are untrusted input: ``hwbench-compare`` on hostile ones, each case in a real
``python -m hwbench.compare`` process (a real FIFO, a real pty, real signals)."""

from __future__ import annotations

import copy
import csv
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_compare import synthetic
from test_records import OK

from hwbench.record.results import RECORD_NAME
from hwbench.record.untrusted import MAX_RECORD_BYTES

# what a hostile record holds: clear-screen, a window title (OSC ... BEL), HTML, a right-to-left override
ESCAPES = "\x1b[2J\x1b]0;pwned\x07"
HOSTILE = f"{ESCAPES}<script>alert(1)</script>\u202e$x$"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what no report file may hold (the CSV's lines end \r\n)
NOT_SGR = re.compile(r"\x1b(?!\[[0-9;]*m)")  # an escape sequence other than rich's own colours


def compare_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "hwbench.compare", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def put(folder: Path, data: bytes | str | dict) -> Path:
    """``data`` as folder/results.json (a dict as JSON)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RECORD_NAME
    if isinstance(data, dict):
        data = json.dumps(data)  # ASCII: other characters, a lone surrogate too, as \u escapes
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def hostile_record() -> dict:
    record = copy.deepcopy(OK)
    record["fingerprint"] |= {"host": HOSTILE, "cpu": HOSTILE}
    record["run_name"] = '=HYPERLINK("http://evil")'  # a spreadsheet would run it as a formula
    return record


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: skipping")]


def test_a_fifo_or_a_device_named_results_json_is_skipped_in_one_line(tmp_path: Path) -> None:
    """Before, compare blocked in open() on the FIFO forever. Twenty job folders: the workers search them (the
    FIFO deep down), while this process lists the top (the FIFO there)."""
    root = tmp_path / "records"
    for k in range(20):
        put(root / f"job{k:02d}", OK)
    os.mkfifo(root / RECORD_NAME)
    (root / "job03" / "deeper").mkdir()
    os.mkfifo(root / "job03" / "deeper" / RECORD_NAME)
    (root / "job07" / "linked").mkdir()
    (root / "job07" / "linked" / RECORD_NAME).symlink_to("/dev/zero")  # a device would be read for ever
    result = compare_cli(str(root), "--out", str(tmp_path / "report"), timeout=120)
    assert result.returncode == 0, result.stderr
    skipped = warnings_of(result.stderr)
    assert sorted(skipped) == sorted(f"warning: skipping {p}: not a regular file" for p in
                                     (root / RECORD_NAME, root / "job03" / "deeper" / RECORD_NAME,
                                      root / "job07" / "linked" / RECORD_NAME))  # fmt: skip
    assert "20 records (20 ok" in result.stdout


def test_escape_codes_and_html_in_a_record_never_reach_a_terminal_or_a_report(tmp_path: Path) -> None:
    """On a real pty (rich colours a terminal): only rich's own colour codes, the record's codes shown escaped;
    compare.md and compare.csv hold no control character, the Markdown no HTML, the CSV no formula."""
    root = tmp_path / "records"
    put(root / "good", OK)
    put(root / "hostile", hostile_record())
    failed = hostile_record() | {"status": "failed", "reason": f"died {HOSTILE}"}
    put(root / "failed", failed)
    report = tmp_path / "report"
    main, child = pty.openpty()
    env = {**os.environ, "COLUMNS": "250", "TERM": "xterm-256color"}
    cmd = [sys.executable, "-m", "hwbench.compare", str(root), "--out", str(report)]
    proc = subprocess.Popen(cmd, stdout=child, stderr=child, env=env)
    os.close(child)
    shown = read_all(main)
    assert proc.wait(timeout=120) == 0, shown
    assert "\x1b[" in shown  # a terminal indeed: rich coloured it
    assert "\x07" not in shown and NOT_SGR.findall(shown) == [], repr(shown[:3000])
    assert "\\x1b[2J" in shown and "\\u202e" in shown  # the record's text, escaped where it is shown
    assert "Glyph" not in shown  # no matplotlib warning about characters the font lacks

    markdown = (report / "compare.md").read_text(encoding="utf-8")
    csv_text = (report / "compare.csv").read_text(encoding="utf-8")
    for text in (markdown, csv_text):
        assert not CONTROL.search(text) and "\u202e" not in text
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown
    assert "\\$x\\$" in markdown  # no TeX math either
    assert "'=HYPERLINK" in csv_text and ",=HYPERLINK" not in csv_text
    assert all((report / name).stat().st_size > 1000 for name in ("throughput.png", "accuracy_vs_time.png"))


def read_all(fd: int) -> str:
    """Everything a pty's other end wrote, until it closed (Linux says EIO then)."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_each_broken_record_is_one_warning_and_compare_goes_on(tmp_path: Path) -> None:
    """Size, depth, encoding, type, a name past the schema's cap: one warning each, and the good record's report.
    Before, a record nested 1,100 deep ended compare with a RecursionError and no report at all."""
    root = tmp_path / "records"
    put(root / "good", OK)
    (root / "huge").mkdir(parents=True)
    with (root / "huge" / RECORD_NAME).open("wb") as f:  # sparse: refused by its size before a byte is read
        f.write(b"{")
        f.truncate(MAX_RECORD_BYTES + 1)
    long_host = copy.deepcopy(OK)
    long_host["fingerprint"]["host"] = "h" * 1_000_000
    deep = json.dumps(OK)[:-1] + f', "config": {{"a": {nested(100_000)}}}}}'
    deep_fingerprint = json.dumps(OK).replace('"gpus": []', f'"gpus": {nested(1_100)}')
    surrogate = copy.deepcopy(OK)
    surrogate["fingerprint"]["host"] = "\ud800host"  # json reads it; no encoder writes it
    bad = {"huge": None, "long_host": long_host, "deep": deep, "deep_fingerprint": deep_fingerprint,
           "not_utf8": b'{"status": "ok", "arch": "\xff\xfe"}', "a_list": "[1, 2, 3]",
           "a_number_as_text": copy.deepcopy(OK) | {"world_size": "two"}, "surrogate_host": surrogate}  # fmt: skip
    for name, data in bad.items():
        if data is not None:
            put(root / name, data)
    in_config = {k: v for k, v in OK.items() if k != "arch"} | {"config": {"arch": {"name": "\ud800arch"}}}
    put(root / "surrogate_in_config", in_config)  # the schema does not type the config: the row's arch is this

    result = compare_cli(str(root), "--out", str(tmp_path / "report"))
    assert result.returncode == 0, result.stderr
    warned = {Path(line.split(": ", 2)[1]).parent.name: line for line in warnings_of(result.stderr)}
    assert sorted(warned) == sorted(bad), result.stderr
    assert len(result.stderr.strip().splitlines()) == len(bad)  # one line each, no traceback
    assert f"{MAX_RECORD_BYTES + 1:,} bytes, over the {MAX_RECORD_BYTES:,}" in warned["huge"]
    assert "fingerprint.host: String should have at most 256 characters" in warned["long_host"]
    assert "nested too deeply" in warned["deep"] and "nested too deeply" in warned["deep_fingerprint"]
    assert "not readable JSON" in warned["not_utf8"] and "not a JSON object" in warned["a_list"]
    assert warned["a_number_as_text"].endswith("world_size: Input should be a valid integer (1 problem(s))")
    assert "fingerprint.host: Input should be a valid string" in warned["surrogate_host"]
    assert "2 records (2 ok" in result.stdout and "\\ud800arch" in result.stdout
    assert len(result.stdout) < 20_000  # a megabyte of host name never reaches the terminal


@pytest.fixture(scope="module")
def many_records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    synthetic().write_records(folder, 3000)
    return folder


def start_compare(records: Path, report: Path) -> subprocess.Popen:
    """compare in a session of its own: a terminal's Ctrl-C reaches every process of its group."""
    cmd = [sys.executable, "-m", "hwbench.compare", str(records), "--out", str(report)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def stopped_cleanly(proc: subprocess.Popen, report: Path, code: int) -> str:
    """Exit 128 + the signal, one line, no traceback from compare or a worker, and a report folder that is
    either complete or says that it is partial; returns the line."""
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith(f"error: interrupted by {signal.Signals(code - 128).name}: ")
    if (report / "PARTIAL.txt").exists():
        assert line.endswith(f"the report in {report} is partial (PARTIAL.txt there says so)")
        assert (report / "PARTIAL.txt").read_text().startswith("This report is partial")
    elif report.exists():
        assert {"compare.csv", "compare.md", "throughput.png"} <= {p.name for p in report.iterdir()}
    else:
        assert line.endswith("no report written")
    return line


def test_ctrl_c_while_reading_ends_compare_and_its_workers_in_one_line(many_records: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    proc = start_compare(many_records, report)
    parent = psutil.Process(proc.pid)
    while proc.poll() is None and not parent.children():  # the workers have started reading
        time.sleep(0.01)
    workers = parent.children()
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal sends Ctrl-C: to compare and its workers
    line = stopped_cleanly(proc, report, 130)
    assert line.endswith("no report written") and not report.exists()
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert workers and not alive  # compare ended its workers


def test_sigterm_while_the_report_is_written_leaves_it_marked_partial(many_records: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    proc = start_compare(many_records, report)
    while proc.poll() is None and not (report / "PARTIAL.txt").exists():
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)  # as `kill` sends it: to compare alone
    line = stopped_cleanly(proc, report, 143)
    assert "partial" in line or "complete" in line


def test_an_impossible_figure_or_a_number_in_quotes_is_one_warning_and_the_record_skipped(tmp_path: Path) -> None:
    """Before, 1e308 samples/s was an ok run: a 309-digit cell and speed-up, the console table down to two
    columns; "123456" was read as a number. The bound: samples/s x the record's FLOPs per sample (at least
    2 x 784) at most 1e17 FLOP/s a device."""
    root = tmp_path / "records"
    counted = copy.deepcopy(OK) | {"flops_per_sample": {"forward": 1_337_344, "train": 4_012_032}}  # the FFNN's
    cases = {
        "absurd": copy.deepcopy(OK) | {"steady": {"samples_per_sec": 1e308, "batches_per_sec": 281.0}},
        "past_its_flops": counted | {"steady": {"samples_per_sec": 1e11, "batches_per_sec": 281.0}},
        "quoted": copy.deepcopy(OK) | {"overall": {"samples_per_sec": "123456", "batches_per_sec": 242.0}},
        "float_epochs": copy.deepcopy(OK) | {"epochs": 2.0},
        "absurd_epoch": copy.deepcopy(OK) | {"epoch_table": [OK["epoch_table"][0] | {"samples_per_sec": 1e300}]},
    }
    put(root / "good", OK)
    put(root / "counted", counted)  # 36,000 samples/s at 4 MFLOPs a sample: possible
    for name, record in cases.items():
        put(root / name, record)
    result = compare_cli(str(root), "--out", str(tmp_path / "report"))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    warned = {Path(line.split(": ", 2)[1]).parent.name: line for line in warnings_of(result.stderr)}
    assert sorted(warned) == sorted(cases) and len(result.stderr.strip().splitlines()) == len(cases)
    assert warned["absurd"].endswith(
        "training.steady.samples_per_sec: 1e+308 samples/s at 1.57e+03 FLOPs a sample (at least 1,568) is inf "
        "FLOP/s, more than 1 device(s) can do (1e+17 FLOP/s each at most)"
    )
    assert "training.steady.samples_per_sec: 1e+11 samples/s at 4.01e+06 FLOPs a sample (training.flops_per_sample)" \
        in warned["past_its_flops"]  # fmt: skip
    assert "training.overall.samples_per_sec: Input should be a valid number" in warned["quoted"]
    assert "epochs: Input should be a valid integer" in warned["float_epochs"]
    assert "training.epochs[1].samples_per_sec: 1e+300 samples/s" in warned["absurd_epoch"]
    assert "2 records (2 ok" in result.stdout
    report = (tmp_path / "report" / "compare.md").read_text() + (tmp_path / "report" / "compare.csv").read_text()
    assert max(len(digits) for digits in re.findall(r"[\d,.]+", report)) < 40  # no 300-digit figure


def test_a_folder_given_by_two_paths_or_a_link_is_read_once(tmp_path: Path, monkeypatch) -> None:
    """Before, `compare runs $PWD/runs` or a link to runs counted every record twice (a median moved)."""
    runs = tmp_path / "runs"
    for k in range(3):
        put(runs / f"job{k}", copy.deepcopy(OK) | {"run_name": f"run{k}"})
    (tmp_path / "link").symlink_to(runs)
    (runs / "job0" / "sub").mkdir()
    (runs / "job0" / "sub" / "back_to_job2").symlink_to(runs / "job2")  # a link inside the tree, to a sibling
    monkeypatch.chdir(tmp_path)  # the user's relative path beside the absolute one
    result = compare_cli("runs", str(runs), "link", str(tmp_path / "link" / "job1"), "--out", "report")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "3 records (3 ok" in result.stdout
    with (tmp_path / "report" / "compare.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["run_name"] for r in rows) == ["run0", "run1", "run2"]
    assert all(r["path"].startswith(f"runs{os.sep}") for r in rows)  # shown by the path given first


def report_files(report: Path) -> dict[str, bytes]:
    """A report's files, byte for byte, less the minute compare.md and report.html name as their time of writing
    and the command line report.html quotes (its --out differs)."""
    files = {p.name: p.read_bytes() for p in report.iterdir()}
    if "compare.md" in files:
        files["compare.md"] = re.sub(rb", \d{4}-\d\d-\d\d \d\d:\d\d\.\n", b", MINUTE.\n", files["compare.md"], count=1)
    if "report.html" in files:
        page = re.sub(rb"made \d{4}-\d\d-\d\d \d\d:\d\d", b"made MINUTE", files["report.html"], count=1)
        files["report.html"] = re.sub(rb"<footer>.*</footer>", b"<footer/>", page, flags=re.S)
    return files


def test_two_compares_into_one_folder_leave_one_whole_report_and_the_one_that_exits_0_finds_its_own(
    tmp_path: Path,
) -> None:
    """Before, one of two compares into one --out always failed with a false 'No such file or directory', and the
    one that exited 0 found the other's report, or PNGs of both, or a PNG torn between them. Now the folder is
    locked while a report is written: the other is refused in one line, and writes nothing."""
    inputs = {}
    for name, count in (("a", 2), ("b", 5)):  # two reports that differ in every file
        inputs[name] = tmp_path / name
        for k in range(count):
            put(inputs[name] / f"job{k}", copy.deepcopy(OK) | {"run_name": f"{name}{k}"})
    alone = {}
    for name, folder in inputs.items():  # each report as it is when written alone
        assert compare_cli(str(folder), "--out", str(tmp_path / f"alone_{name}")).returncode == 0
        alone[name] = report_files(tmp_path / f"alone_{name}")
    assert alone["a"].keys() == alone["b"].keys() and all(alone["a"][k] != alone["b"][k] for k in alone["a"])
    refusal = "error: another hwbench-compare is writing a report to {} now: wait for it to finish and run this " \
              "one again, or give this one its own --out"  # fmt: skip
    for attempt in range(3):
        report = tmp_path / f"report{attempt}"
        procs = {name: start_compare(folder, report) for name, folder in inputs.items()}
        ended = {name: (proc, *proc.communicate(timeout=120)) for name, proc in procs.items()}
        succeeded = [name for name, (proc, _, _) in ended.items() if proc.returncode == 0]
        for proc, _, stderr in ended.values():
            assert "Traceback" not in stderr and "No such file" not in stderr, stderr
            if proc.returncode != 0:
                assert proc.returncode == 2 and stderr.strip() == refusal.format(report)
        left = report_files(report)
        assert left in (alone["a"], alone["b"])  # one run's whole report: no mixed or torn file, no PARTIAL.txt
        if len(succeeded) == 1:  # they overlapped: the one that exited 0 finds its own report
            assert left == alone[succeeded[0]]
        else:  # one ran after the other: the later report replaced the earlier one whole
            assert len(succeeded) == 2
