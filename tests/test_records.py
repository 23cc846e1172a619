"""The results record's schema: what compare accepts, what it names and skips, and what still reads."""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwbench.compare import main as compare
from hwbench.compare.reading import record_paths
from hwbench.record.results import (
    RECORD_NAME,
    SCHEMA_VERSION,
    ResultsRecord,
    file_bytes,
    parse_record,
    read_record,
    write_record,
)

OK = {  # a complete record as hwbench writes it, pared to the fields compare reads
    "schema_version": 2, "status": "ok", "reason": None, "run_name": "ffnn_cpu_e2", "arch": "ffnn",
    "device": "cpu", "epochs": 2, "started": "2026-11-25T01:00:00+00:00", "config": {"batch_size": 128},
    "fingerprint": {"host": "vm", "cpu": "AMD EPYC 7B13", "threads": 2, "accelerator": "cpu",
                    "precision": "32", "gpus": []},
    "epoch_table": [{"epoch": 1, "seconds": 2.0, "train_seconds": 2.0, "samples_per_sec": 27000.0,
                     "train_loss": 0.5, "val_acc": 0.9},
                    {"epoch": 2, "seconds": 1.5, "train_seconds": 3.5, "samples_per_sec": 36000.0,
                     "train_loss": 0.3, "val_acc": 0.92}],
    "metrics": {"test_acc": 0.92, "test_loss": 0.3},
    "overall": {"samples_per_sec": 31000.0, "batches_per_sec": 242.0},
    "steady": {"samples_per_sec": 36000.0, "batches_per_sec": 281.0},
    "inference": {"batch_size": 1024, "samples_per_sec": 800000.0, "latency_ms_p50": 0.1, "latency_ms_p90": 0.2},
}  # fmt: skip

junk = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)  # fmt: skip
PATHS = [("status",), ("arch",), ("epochs",), ("config",), ("config", "batch_size"), ("fingerprint",),
         ("fingerprint", "host"), ("fingerprint", "threads"), ("fingerprint", "gpus"), ("epoch_table",),
         ("metrics", "test_acc"), ("steady", "samples_per_sec"), ("overall",), ("inference", "latency_ms_p50"),
         ("started",), ("schema_version",)]  # fmt: skip


@st.composite
def records(draw: st.DrawFn) -> dict:
    """A good record, then some fields deleted or replaced by junk (text, NaN, huge numbers, unicode)."""
    record = copy.deepcopy(OK)
    record["fingerprint"]["host"] = draw(st.text(min_size=1, max_size=12))  # unicode hosts are fine
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=3, unique=True)):
        parent = record
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent.get(key), dict) else {}
        if draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(junk)
    return record


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(records(), min_size=1, max_size=4))
def test_compare_never_crashes_and_names_every_bad_record(batch: list[dict], tmp_path: Path, capfd) -> None:
    root = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    paths = []
    for i, record in enumerate(batch):
        path = root / f"job{i}" / RECORD_NAME
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record, ensure_ascii=False))  # NaN and Infinity as Python writes them
        paths.append(path)
    valid = []
    for path in paths:
        with contextlib.suppress(ValueError):
            valid.append(read_record(path))
    code = compare([str(root), "--out", str(root / "report")])
    err = capfd.readouterr().err
    assert code == (0 if valid else 2)
    warnings = [line for line in err.splitlines() if line.startswith("warning: skipping")]
    assert len(warnings) == len(paths) - len(valid)  # one line for each bad record, naming it
    for line in warnings:
        assert any(str(p) in line for p in paths)
    for record in valid:  # what passes the schema is what compare can trust
        speed = record.train_speed
        assert record.status != "ok" or (speed is not None and math.isfinite(speed.samples_per_sec))


def compare_good_and(folder: Path, name: str, record: dict, capsys) -> tuple[str, str]:
    """compare on a good record and ``record`` (in folder/name): the one warning line, and stdout."""
    for job, data in (("good", OK), (name, record)):
        (folder / job).mkdir()
        (folder / job / RECORD_NAME).write_text(json.dumps(data))
    assert compare([str(folder), "--out", str(folder / "report")]) == 0
    captured = capsys.readouterr()
    (warning,) = captured.err.strip().splitlines()
    return warning, captured.out


def test_a_mistyped_field_is_named_and_skipped(tmp_path: Path, capsys) -> None:
    bad = copy.deepcopy(OK) | {"steady": {"samples_per_sec": "fast", "batches_per_sec": 1.0}}
    warning, out = compare_good_and(tmp_path, "bad", bad, capsys)
    assert warning.startswith(f"warning: skipping {tmp_path / 'bad' / RECORD_NAME}: training.steady.samples_per_sec:")
    assert "1 record (1 ok" in out


def test_a_record_longer_than_one_read_reads_whole(tmp_path: Path) -> None:
    """The fast path reads 64 KiB at a time: a long run's epoch table spans several reads."""
    record = parse_record(OK)
    epoch = record.training.epochs[-1]
    record.training.epochs = [epoch.model_copy(update={"epoch": k}) for k in range(1, 1001)]
    path = write_record(tmp_path, record)
    assert path.stat().st_size > 3 * 2**16
    assert file_bytes(path) == path.read_bytes()
    assert read_record(path) == record


def test_a_record_of_hwbench_0_1_still_reads(tmp_path: Path) -> None:
    """Version 1 had no schema_version, and wrote NaN as a bare JSON constant."""
    legacy = copy.deepcopy({k: v for k, v in OK.items() if k != "schema_version"})
    legacy["epoch_table"][0]["train_loss"] = float("nan")
    (tmp_path / RECORD_NAME).write_text(json.dumps(legacy))
    record = read_record(tmp_path / RECORD_NAME)
    assert record.schema_version == 1 and record.status == "ok"
    assert record.train_speed.samples_per_sec == 36000.0 and record.train_basis == "steady"


@pytest.mark.parametrize(
    ("fingerprint", "label"),
    [
        ({"accelerator": "cuda", "gpus": [{"name": "NVIDIA H100 80GB HBM3"}]}, "NVIDIA H100 80GB HBM3"),
        ({"accelerator": "cpu", "gpus": [{"name": "NVIDIA H100 80GB HBM3"}]}, "AMD EPYC 7B13 (2 threads)"),
        ({"accelerator": "cpu", "gpus": []}, "AMD EPYC 7B13 (2 threads)"),
    ],
)
def test_the_device_name_is_the_hardware_that_trained(fingerprint: dict, label: str) -> None:
    record = parse_record(OK | {"fingerprint": OK["fingerprint"] | fingerprint})
    assert record.device_label == label  # a CPU run on a CUDA host is the CPU's


def test_compare_shows_energy_and_marks_host_bound_gpu_rows(tmp_path: Path, capsys) -> None:
    gpu = copy.deepcopy(OK)
    gpu["fingerprint"] |= {"accelerator": "cuda", "gpus": [{"name": "NVIDIA H100 80GB HBM3"}]}
    gpu["resources"] = {"gpu_busy_percent": 31.0, "samples_per_joule": 512.5, "energy_source": "gpu"}
    cpu = copy.deepcopy(OK) | {"resources": {"peak_host_rss_mb": 900.0, "cpu_energy_unavailable": "no RAPL"}}
    for name, record in (("gpu", gpu), ("cpu", cpu)):
        (tmp_path / name).mkdir()
        (tmp_path / name / RECORD_NAME).write_text(json.dumps(record))
    assert compare([str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "31 host-bound" in out and "512.5" in out and "the GPU was busy under half the time" in out
    rows = {r["job"]: r for r in csv.DictReader((tmp_path / "report" / "compare.csv").open())}
    assert rows["gpu"]["host_bound"] == "True" and rows["gpu"]["samples_per_joule"] == "512.5"
    assert rows["cpu"]["host_bound"] == "False" and rows["cpu"]["peak_host_rss_mb"] == "900.0"
    assert rows["cpu"]["samples_per_joule"] == ""  # no counter, no figure
    assert "host-bound" in (tmp_path / "report" / "compare.md").read_text()


def test_a_misspelled_field_is_refused_when_written(tmp_path: Path) -> None:
    record = parse_record(OK)
    with pytest.raises(ValueError, match="steady_samples"):
        record.steady_samples = 1.0  # a part's name mistyped: refused on assignment, never kept silently
    typo = json.loads(record.model_dump_json()) | {"trainnig": {"seconds": 1.0}}
    with pytest.raises(ValueError, match="trainnig"):
        write_record(tmp_path, parse_record(typo))
    assert not (tmp_path / RECORD_NAME).exists()


def test_a_record_from_a_newer_hwbench_is_named_and_skipped(tmp_path: Path, capsys) -> None:
    newer = json.loads(parse_record(OK).model_dump_json()) | {"schema_version": 99}
    warning, out = compare_good_and(tmp_path, "newer", newer, capsys)
    assert warning == (f"warning: skipping {tmp_path / 'newer' / RECORD_NAME}: written by a newer hwbench (schema "
                       f"version 99; this one reads 1 to {SCHEMA_VERSION}): upgrade hwbench to read it")  # fmt: skip
    assert "1 record (1 ok" in out


def test_an_old_record_reads_in_the_current_shape(tmp_path: Path) -> None:
    """Version 2 kept the training figures at the top level and named the preparation time by strategy."""
    graphed = copy.deepcopy(OK) | {"capture_seconds": 1.5, "config": {"execution": "graph", "compile": False}}
    (tmp_path / RECORD_NAME).write_text(json.dumps(graphed))
    record = read_record(tmp_path / RECORD_NAME)
    assert record.schema_version == 2 and record.training.epochs[1].samples_per_sec == 36000.0
    assert record.execution.kind == "graph" and record.execution.prepare_seconds == 1.5
    again = ResultsRecord.model_validate(record.model_dump())  # in the current shape: valid as it is
    assert again == record


@pytest.mark.parametrize("version", [1, 2])
def test_an_old_record_in_the_current_shape_is_still_upgraded(tmp_path: Path, version: int) -> None:
    """A skipped run of an older version has none of the fields that moved: it would validate as it is, but
    only the upgrade knows how its config named the execution."""
    skipped = {"status": "skipped", "reason": "no CUDA device", "config": {"execution": "graph", "compile": False}}
    (tmp_path / RECORD_NAME).write_text(json.dumps(skipped | ({"schema_version": 2} if version == 2 else {})))
    record = read_record(tmp_path / RECORD_NAME)
    assert record.schema_version == version and record.execution.kind == "graph"


def test_links_are_followed_and_a_loop_or_dangling_link_is_named(tmp_path: Path, capsys) -> None:
    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    for folder in (runs / "job", elsewhere / "job"):
        folder.mkdir(parents=True)
        (folder / RECORD_NAME).write_text(json.dumps(OK))
    (runs / "copied_in").symlink_to(elsewhere)  # a folder brought in by a link: read, once
    (runs / "again").symlink_to(elsewhere)
    (runs / "job" / "loop").symlink_to(runs)  # back to an ancestor: following it would never end
    (runs / "self").symlink_to(runs / "self")
    (runs / "gone").symlink_to(tmp_path / "deleted")
    found = record_paths([runs])
    assert sorted(os.path.relpath(p, runs) for p in found) == ["again/job/results.json", "job/results.json"]
    assert capsys.readouterr().err.splitlines() == [
        f"warning: skipping {runs / 'gone'}: a dangling link to {tmp_path / 'deleted'} (No such file or directory)",
        f"warning: skipping {runs / 'self'}: a symlink loop",
        f"warning: skipping {runs / 'job' / 'loop'}: a symlink loop (back to {runs})",
    ]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_a_record_is_as_readable_as_the_umask_makes_every_file(tmp_path: Path, umask: int) -> None:
    before = os.umask(umask)
    try:
        path = write_record(tmp_path, parse_record(OK))
        (tmp_path / "other").write_text("any other output")
    finally:
        os.umask(before)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask == (tmp_path / "other").stat().st_mode & 0o777


def test_a_noisy_run_is_marked_and_never_counted(tmp_path: Path, capsys) -> None:
    """The slower run would be the baseline, but the machine was busy while it was timed: it is listed, marked, and
    counts in no setup's figures."""
    busy = {"window_seconds": 3.0, "cores": 2, "others_cpu_percent": 61.0, "steal_percent": 0.5}
    noisy = copy.deepcopy(OK) | {"machine_load": busy, "steady": {"samples_per_sec": 18000.0, "batches_per_sec": 1.0}}
    quiet = copy.deepcopy(OK) | {"machine_load": busy | {"others_cpu_percent": 2.0}}
    for name, record in (("busy", noisy), ("calm", quiet)):
        (tmp_path / name).mkdir()
        (tmp_path / name / RECORD_NAME).write_text(json.dumps(record))
    record = read_record(tmp_path / "busy" / RECORD_NAME)
    assert record.noise == ["other processes used 61% of the 2 cores"]
    assert record.summary().endswith(", noisy: other processes used 61% of the 2 cores")
    assert read_record(tmp_path / "calm" / RECORD_NAME).noise == []
    assert compare([str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "18,000 noisy" in out and "the machine had other load while the run was timed" in out
    rows = {r["job"]: r for r in csv.DictReader((tmp_path / "report" / "compare.csv").open())}
    assert rows["busy"]["noisy"] == "other processes used 61% of the 2 cores" and rows["calm"]["noisy"] == ""
    (setup,) = csv.DictReader((tmp_path / "report" / "setups.csv").open())  # both runs: one setup
    assert setup["runs"] == "1" and setup["left_out"] == "1 noisy"
    assert float(setup["median_samples_per_sec"]) == float(rows["calm"]["train_samples_per_sec"])
    assert compare([str(tmp_path), "--baseline", "busy", "--out", str(tmp_path / "report")]) != 0
    assert "such a run is never a baseline" in capsys.readouterr().err


def test_a_version_3_record_reads_as_written(tmp_path: Path) -> None:
    """Version 4 only added parts (job, machine_load): a version-3 record keeps its execution and all."""
    v3 = json.loads(parse_record(OK).model_dump_json(exclude={"job", "machine_load"})) | {"schema_version": 3}
    v3["execution"] = {"kind": "graph", "steps_per_graph": 8, "prepare_seconds": 1.5}
    (tmp_path / RECORD_NAME).write_text(json.dumps(v3))
    record = read_record(tmp_path / RECORD_NAME)
    assert record.schema_version == 3 and record.execution.kind == "graph" and record.execution.steps_per_graph == 8


def test_a_version_7_record_keeps_its_kernel_choice_in_one_place(tmp_path: Path) -> None:
    """Version 7 copied the kernel choice into the fingerprint: read back, the record's cpu_kernels part holds it,
    the fingerprint no longer does, and a current record with such a copy is refused as an unknown field."""
    current = json.loads(parse_record(OK).model_dump_json())
    v7 = copy.deepcopy(current) | {"schema_version": 7}
    v7["fingerprint"]["cpu_kernels"] = {"linear": "onednn"}
    (tmp_path / RECORD_NAME).write_text(json.dumps(v7))
    record = read_record(tmp_path / RECORD_NAME)
    assert record.schema_version == 7 and "cpu_kernels" not in record.fingerprint.model_dump()
    assert record.fingerprint.host == current["fingerprint"]["host"]  # the rest of it kept
    copied = copy.deepcopy(current) | {"schema_version": SCHEMA_VERSION}
    copied["fingerprint"]["cpu_kernels"] = {"linear": "onednn"}
    with pytest.raises(ValueError, match="cpu_kernels"):
        parse_record(copied)
