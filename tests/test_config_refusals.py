"""Config values that would put a job's files outside its folder, or make a run whose figures mean nothing: each
refused in one line naming the fix (or, oversubscribed threads, warned of and recorded). One refusal runs end to end
in a real ``python -m hwbench`` process (exit 1, the line, the failed record); the others run the same job in this
process (hwbench.job.runner.run), whose record's summary is the line that process ends with."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from conftest import CLOCK_ONLY, spelled
from hwbench.errors import ConfigError
from hwbench.job.config import check
from hwbench.job.folders import inside
from hwbench.job.runner import run
from hwbench.record.results import read_record

CORES = len(os.sched_getaffinity(0))


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.name != "stderr.txt") if folder.exists() else []


def test_a_run_name_that_leads_out_of_the_output_folder_is_refused_before_anything_is_created(
    hwbench_cli, tmp_path
) -> None:
    """Before, run_name=../../../../escape3 put the job's folder outside output_root and left an empty
    '<stamp>_..' folder behind; in a sweep, an empty folder outside the sweep's."""
    root = tmp_path / "deep" / "er"
    single = hwbench_cli("run_name=../../../../escape3", "device=cpu", f"output_root={root / 'outputs'}")
    assert single.returncode == 1 and "Traceback" not in single.stderr
    (line,) = single.stderr.strip().splitlines()
    assert line.startswith("error: run_name makes the job's folder '") and "../../../../escape3', which leads out of " \
        f"{root / 'outputs' / 'runs'}: give a run_name (and arch.name and device.name, which it is made of) " \
        "without '..', e.g. run_name=my_run" in line  # fmt: skip
    swept = hwbench_cli("-m", "run_name=../../../x,ok", "device=cpu", f"output_root={root / 'outputs'}")
    assert swept.returncode == 1 and swept.stderr.strip().splitlines()[-1].startswith("error: run_name makes the job")
    (sweep,) = (root / "outputs" / "multiruns").iterdir()  # the sweep started: its own folder, and nothing more
    made = [tmp_path / "deep", root, root / "outputs", root / "outputs" / "multiruns", sweep, sweep / "multirun.yaml"]
    assert files_under(tmp_path) == made
    logged = hwbench_cli("hydra.job.name=../log", "device=cpu", f"output_root={tmp_path / 'other'}")
    assert logged.returncode == 1 and logged.stderr.strip() == (
        "error: hydra.job.name='../log' must be a plain file name (no '/', not '..'): e.g. hydra.job.name=hwbench"
    )
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    ("name", "ok"),
    [("ffnn_cpu_e5", True), ("group/run", True), ("a/../b", True), ("0_../x", True), ("../x", False),
     ("0_../../x", True), ("0_../../../x", False), ("/abs", False), ("a/../..", False), ("x" * 201, False)],
)  # fmt: skip
def test_a_folder_name_stays_inside_its_parent(name: str, ok: bool, tmp_path: Path) -> None:
    if ok:
        assert inside(str(tmp_path), name).resolve().is_relative_to(tmp_path)
    else:
        with pytest.raises(ConfigError):
            inside(str(tmp_path), name)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (("batch_size=100000", "data.train_limit=2000"), "batch_size=100000 is a batch of 100,000 images, more than "
         "the 2,000 training images (data.train_limit=2000): set batch_size to at most 500, or train on more images "
         "(data.train_limit, data.val_size)"),
        (("data.val_size=59999",), "batch_size=128 is a batch of 128 images, more than the 1 training images (60,000 "
         "less data.val_size=59999): train on more images (data.train_limit, data.val_size)"),
        (("data.train_limit=300",), "300 training images (data.train_limit=300) make 3 step(s) an epoch at "
         "batch_size=128: too few to time (at least 4): set batch_size to at most 75, or train on more images "
         "(data.train_limit, data.val_size)"),
        (("+foo=bar",), "foo: no such key in the config (python -m hwbench --cfg job shows every key and its value; "
         "+KEY=VALUE adds keys only under arch.net, optim.optimizer, optim.scheduler and execution (a constructor's "
         "arguments))"),
        (("+epoch=20",), "epoch: no such key in the config; did you mean epochs? (python -m hwbench --cfg job shows "
         "every key and its value; +KEY=VALUE adds keys only under arch.net, optim.optimizer, optim.scheduler and "
         "execution (a constructor's arguments))"),
        (("device.threads=0",), f"device.threads must be at least 1, got 0: set e.g. device.threads={CORES} (the "
         "cores this process may use)"),
        # before, Lightning's warning with its source path, bf16 run and the record saying 16-mixed
        (("device.precision=16-mixed",), "device.precision=16-mixed (float16) runs on a GPU only: on a CPU set "
         "device.precision=bf16-mixed (or 32)"),
    ],
    ids=["batch over the images", "one training image", "three steps an epoch", "+foo", "+epoch", "threads=0",
         "16-mixed on a CPU"],
)  # fmt: skip
def test_a_value_that_makes_a_meaningless_run_is_refused_before_training(make_cfg, tmp_path, overrides, reason):
    record = run(make_cfg(*overrides), tmp_path)  # the job python -m hwbench runs, here in this process
    reason = reason.replace("python -m hwbench", spelled("hwbench", Path.cwd()))  # as a shell here runs it
    assert record.summary() == f"ffnn cpu epochs=5: failed: {reason}"  # the line after "error: " (below)
    assert read_record(tmp_path / "results.json") == record and record.traceback is None
    assert record.status == "failed" and record.reason == reason and record.training is None


def test_a_refused_value_ends_the_process_in_one_line_and_a_failed_record(hwbench_cli, tmp_path) -> None:
    """The refusals above, end to end: the one line as the user's shell spells the command, exit 1, the record."""
    result = hwbench_cli("+epoch=20", "device=cpu")
    reason = (
        "epoch: no such key in the config; did you mean epochs? (python -m hwbench --cfg job shows every key "
        "and its value; +KEY=VALUE adds keys only under arch.net, optim.optimizer, optim.scheduler and "
        "execution (a constructor's arguments))"
    ).replace("python -m hwbench", spelled("hwbench", tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: ffnn cpu epochs=5: failed: {reason}"
    (record,) = [read_record(p) for p in (tmp_path / "outputs").rglob("results.json")]
    assert record.status == "failed" and record.reason == reason and record.training is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(("device.devices=2", "data.train_limit=400"), "400 training images (data.train_limit=400) make 1 step(s) an "
      "epoch at batch_size=128 x device.devices=2: too few to time (at least 4): set batch_size to at most 50, or "
      "train on more images (data.train_limit, data.val_size)"),
     (("data.batch_size=64",), "data.batch_size=64 differs from batch_size=128: set batch_size=64 instead "
      "(data.batch_size follows it)")],
)  # fmt: skip
def test_the_split_is_checked_against_the_global_batch(make_cfg, overrides, message) -> None:
    with pytest.raises(ConfigError) as refused:
        check(make_cfg(*overrides))
    assert str(refused.value) == message


def test_a_constructors_arguments_take_new_keys(make_cfg) -> None:
    check(make_cfg("+optim.optimizer.nesterov=false", "+arch.net.extra=1", "+execution.extra=1"))


def test_more_threads_than_cores_is_one_warning_and_recorded(hwbench_cli, tmp_path) -> None:
    """Oversubscribing is sometimes wanted: warned of, not refused; the record keeps the cores it had."""
    threads = CORES + 1
    result = hwbench_cli(f"device.threads={threads}", "device=cpu", "epochs=1", "data.train_limit=512", *CLOCK_ONLY)
    assert result.returncode == 0, result.stderr[-2000:]
    warning = (f"warning: device.threads={threads} is more than the {CORES} cores this process may use: the threads "
               f"take turns on the cores, and the figures measure that")  # fmt: skip
    assert result.stdout.splitlines().count(warning) == 1
    (record,) = [read_record(p) for p in (tmp_path / "outputs").rglob("results.json")]
    assert record.status == "ok" and (record.fingerprint.threads, record.fingerprint.usable_cores) == (threads, CORES)


def test_a_non_ascii_output_root_names_hydras_quoting(hwbench_cli, tmp_path) -> None:
    root = tmp_path / "out dir" / "ü"
    result = hwbench_cli(f"output_root={root}")
    assert result.returncode == 1 and result.stderr.strip() == (
        f"error: output_root={root}: Hydra's override grammar reads this value only in quotes: write "
        f"\"output_root='{root}'\""
    )
    quoted = hwbench_cli(f"output_root='{root}'", "--cfg", "job")  # what the line says, as the shell passes it
    # YAML folds a long path over two lines: read it back as YAML
    assert quoted.returncode == 0 and yaml.safe_load(quoted.stdout)["output_root"] == str(root)


@pytest.mark.parametrize(
    ("args", "line"),
    [(["repeats=3"], "error: repeats=3 runs each point of a sweep 3 times: add -m, e.g. python -m hwbench -m "
                     "arch=ffnn repeats=3"),
     (["-m", "repeats=two"], "error: repeats=two must be one whole number, at least 1: e.g. repeats=5"),
     (["-m", "repeats=2,3"], "error: repeats=2,3 must be one whole number, at least 1: e.g. repeats=5"),
     (["-m", "repeat=2"], "error: repeat is set by the sweep, one value per job: give repeats=N (with -m) instead")],
)  # fmt: skip
def test_repeats_that_mean_nothing_are_refused_before_anything_runs(hwbench_cli, tmp_path, args, line) -> None:
    result = hwbench_cli(*args, "device=cpu")
    line = line.replace("python -m hwbench", spelled("hwbench", tmp_path))  # as this shell runs it
    assert result.returncode == 1 and result.stderr.strip() == line
    assert not (tmp_path / "outputs").exists()
