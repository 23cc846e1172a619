"""Past one machine: a real two-node SLURM cluster on this machine (scripts/local_slurm.sh: munge, slurmctld, two
slurmd) and two torchrun "nodes" on 127.0.0.1, each training one DDP job over gloo across its two nodes."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_scaleout import installed

from conftest import CLOCK_ONLY
from hwbench.compare.cli import main as compare
from hwbench.job.config import compose_config
from hwbench.launch.torchrun import RUNS_HERE
from hwbench.record.results import ResultsRecord, read_record

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "local_slurm.sh"
SHORT = ("device=cpu", "arch=ffnn", "device.threads=1", "data.train_limit=2000", *CLOCK_ONLY)  # one thread a rank
SRUN_HINT = "The `srun` command is available on your system but is not used"
pytestmark = pytest.mark.xdist_group("ddp")  # one pytest worker runs the DDP tests: they share 2 cores


def records(root: Path) -> dict[str, ResultsRecord]:
    return {p.parent.name: read_record(p) for p in root.rglob("results.json")}


def job_logs(job: Path) -> str:
    """What a failed assertion shows of a SLURM job: its ranks' logs and its tasks' submitit logs (the tails)."""
    task = job.name.split("_")[0]  # an array's element: .submitit/<array>_<element>/; a lone job: .submitit/<id>/
    submitit = sorted(job.parent.glob(f".submitit/*_{task}/*_log.*")) or sorted(job.parent.glob(".submitit/*/*_log.*"))
    logs = [*job.glob("*.log"), *submitit]
    return "\n".join(f"== {log}\n{log.read_text(errors='replace')[-2000:]}" for log in logs)


def free_port(span: int = 1) -> int:
    """A port with ``span`` free ports from it (the cluster's: slurmctld and its two nodes)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + span < 65536 and all(port_free(base + k) for k in range(span)):
            return base
    raise AssertionError("no free ports")


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cannot_run_slurm() -> str | None:
    if sys.platform != "linux":
        return "the local SLURM cluster is Linux's (Debian's packages)"
    if not installed("hydra_plugins.hydra_submitit_launcher"):
        return "the cluster extra is not installed: pip install -e '.[cluster]'"
    if os.geteuid() != 0:
        return "the local SLURM cluster runs as root (scripts/local_slurm.sh starts munge, slurmctld and slurmd)"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "SLURM is not installed and there is no apt-get to install it"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """scripts/local_slurm.sh up, in a folder and on ports of its own; its environment; down at the end."""
    if why := cannot_run_slurm():
        pytest.skip(why)
    folder = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "HWBENCH_SLURM_DIR": str(folder), "HWBENCH_SLURM_PORT": str(free_port(3))}
    up = subprocess.run(["bash", str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=900)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=env | slurm_env(folder), capture_output=True,
                               text=True, check=True).stdout.split()  # fmt: skip
        assert nodes == ["n1", "idle", "n2", "idle"]
        yield env | slurm_env(folder)
    finally:
        down = subprocess.run(["bash", str(SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr
        assert not list((folder / "run").glob("*.pid"))  # what it started has stopped


def slurm_env(folder: Path) -> dict[str, str]:
    return {"SLURM_CONF": str(folder / "etc" / "slurm.conf"), "PATH": f"{folder / 'bin'}:{os.environ['PATH']}"}


def test_a_slurm_sweep_trains_across_two_nodes_and_a_cancelled_job_is_named(cluster, data_root, tmp_path, capsys):
    """Two sweep points on 2 nodes x 1 rank (gloo) end ok; the third, scancelled after its first epoch, records
    what it finished, and the sweep's closing line names it. compare sets the two against one node."""
    env = cluster | {"HWBENCH_DATA": data_root, "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "outputs"
    cmd = [sys.executable, "-m", "hwbench", "-m", "hydra/launcher=slurm", "device.nodes=2", "epochs=1,1,1000",
           *SHORT, f"output_root={out}"]  # fmt: skip
    sweep = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    long = None
    while sweep.poll() is None:  # the 1000-epoch job, once it has recorded an epoch
        long = long or next(out.glob("multiruns/*/2_ffnn_cpu_e1000"), None)
        if long is not None and (long / "results.json").exists():
            record = read_record(long / "results.json")
            if record.training and record.training.epochs:
                break
        time.sleep(0.2)
    (array,) = [p.name for p in out.glob("multiruns/*/.submitit/*") if p.name.isdigit()]
    subprocess.run(["scancel", f"{array}_2"], env=env, check=True)
    stdout, stderr = sweep.communicate(timeout=300)

    assert sweep.returncode == 1 and "Traceback" not in stderr, stdout[-3000:] + stderr[-3000:]
    jobs = records(out)
    cancelled = jobs.pop("2_ffnn_cpu_e1000")
    assert stderr.strip().splitlines()[-1] == (
        "error: 1 job(s) did not finish ok: 2_ffnn_cpu_e1000 (interrupted) (see their results.json)"
    ), stderr[-3000:] + job_logs(long)
    assert (cancelled.status, cancelled.interruption.signal) == ("interrupted", "SIGTERM"), job_logs(long)
    assert cancelled.interruption.epochs_finished == len(cancelled.training.epochs) >= 1
    assert sorted(jobs) == ["0_ffnn_cpu_e1", "1_ffnn_cpu_e1"]
    for name, record in jobs.items():
        assert (record.status, record.world_size, record.nodes, record.devices_per_node) == ("ok", 2, 2, 1)
        assert (record.strategy, record.backend, record.global_batch_size) == ("DDPStrategy", "gloo", 256)
        folder = long.parent / name
        assert "GLOBAL_RANK: 1" in (folder / "ddp_rank1.log").read_text()  # task 1 (node n2) logs apart
        assert "GLOBAL_RANK: 1" not in (folder / "hwbench.log").read_text()
        assert SRUN_HINT not in stdout + stderr
    # what the launcher asked SLURM for: 2 nodes of 1 task, one CPU each (device.threads), no GPU for a CPU job
    (script,) = long.parent.glob(f".submitit/{array}/*_submission.sh")
    asked = {line.split()[1] for line in script.read_text().splitlines() if line.startswith("#SBATCH")}
    assert {"--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1"} <= asked
    assert not [a for a in asked if "gpu" in a or a.startswith("--partition")]

    one = subprocess.run([sys.executable, "-m", "hwbench", "epochs=1", *SHORT, f"output_root={tmp_path / 'one'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    assert SRUN_HINT not in one.stdout + one.stderr
    assert SRUN_HINT in next((tmp_path / "one").rglob("hwbench.log")).read_text()  # kept in the job's log
    capsys.readouterr()
    # two folders of one machine: --merge-sources sets them side by side as one source (compare keeps folders apart)
    assert compare([str(long.parent), str(tmp_path / "one"), "--merge-sources", "--out", str(tmp_path / "report")]) == 0
    assert "scale-up" in capsys.readouterr().out  # the console's column (or its note, where the terminal is narrow)
    markdown = (tmp_path / "report" / "compare.md").read_text().splitlines()
    assert "| scale-up |" in next(line for line in markdown if "| job |" in line)  # the runs' table
    rows = {r["job"]: r for r in csv.DictReader((tmp_path / "report" / "compare.csv").open())}
    (base,) = [r for r in rows.values() if r["world_size"] == "1"]
    for name in jobs:
        assert rows[name]["hardware"].endswith(", 1 thr, 2 nodes x1") and rows[name]["world_size"] == "2"
        speeds = float(rows[name]["train_samples_per_sec"]), float(base["train_samples_per_sec"])
        assert float(rows[name]["scaling_speedup"]) == pytest.approx(speeds[0] / speeds[1])
    assert (tmp_path / "report" / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_a_slurm_job_reaching_its_time_limit_records_its_epochs_and_is_named(cluster, data_root, tmp_path) -> None:
    """hydra.launcher.timeout_min: SLURM signals every task signal_delay_s before the job's time limit (submitit's
    --signal=USR2@...), as it signals them at the limit itself (SIGTERM, as scancel); the job records what it
    finished, ends before the limit, and the sweep's closing line names it. The warning is due 80 s into a 2-minute
    limit: SLURM sends it at its last time-limit check before then (they are 30 s apart), 50 to 80 s after the job
    started. One node: the 2-node stop (each rank stops) is the scancel test's; here a loaded machine's slow start of
    two ranks once took the whole 2 minutes."""
    out = tmp_path / "outputs"
    cmd = [sys.executable, "-m", "hwbench", "-m", "hydra/launcher=slurm", "epochs=100000", *SHORT,
           "data.train_limit=1024", "hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=40",
           f"output_root={out}"]  # fmt: skip
    env = cluster | {"HWBENCH_DATA": data_root}
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    (job,) = out.glob("multiruns/*/0_ffnn_cpu_e100000")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:] + job_logs(job)
    assert result.stderr.strip().splitlines()[-1] == (
        "error: 1 job(s) did not finish ok: 0_ffnn_cpu_e100000 (interrupted) (see their results.json)"
    ), result.stderr[-3000:] + job_logs(job)
    record = read_record(job / "results.json")
    assert (record.status, record.interruption.signal) == ("interrupted", "SIGUSR2"), job_logs(job)
    assert record.interruption.epochs_finished == len(record.training.epochs) >= 1, job_logs(job)
    assert record.training.partial and record.metrics is None


def test_fewer_slurm_tasks_than_ranks_is_refused_in_one_line(cluster, data_root, tmp_path) -> None:
    """srun with one task for a 2-node job: Lightning would wait for a rank that never comes, or train a smaller
    job than the record says."""
    cmd = ["srun", "--nodes=1", "--ntasks=1", sys.executable, "-m", "hwbench", "device.nodes=2", "epochs=1",
           *SHORT, f"output_root={tmp_path / 'outputs'}"]  # fmt: skip
    env = cluster | {"HWBENCH_DATA": data_root}
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    reason = ("SLURM gave this job 1 task(s) on 1 node(s) but device.nodes=2 x device.devices=1 trains on 2 rank(s): "
              "submit it with --nodes=2 --ntasks-per-node=1")  # fmt: skip
    lines = result.stderr.strip().splitlines()  # the last: srun's "srun: error: n1: task 0: Exited with exit code 1"
    assert lines[-2].startswith(f"error: ffnn cpu 2 nodes x1 epochs=1: failed: {reason}")
    ((_, record),) = records(tmp_path / "outputs").items()
    assert record.status == "failed" and record.reason.startswith(reason)


def test_the_slurm_launcher_asks_gpus_for_gpu_jobs_only() -> None:
    def asked(*overrides: str) -> tuple:
        from hydra import compose, initialize_config_dir

        from hwbench.job.config import config_dir, register

        register()
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("config", ["hydra/launcher=slurm", *overrides], return_hydra_config=True)
        launcher = cfg.hydra.launcher
        return launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node, launcher.cpus_per_task

    if not installed("hydra_plugins.hydra_submitit_launcher"):
        pytest.skip("the cluster extra is not installed: pip install -e '.[cluster]'")
    assert asked("device=gpu", "device.nodes=2", "device.devices=4", "device.threads=8") == (2, 4, 4, 8)
    assert asked("device=cpu", "device.devices=2") == (1, 2, None, None)
    assert asked("device=auto") == (1, 1, None, None)  # the login node cannot tell what the compute nodes have
    assert compose_config(["device.nodes=3"]).device.nodes == 3


def test_two_torchrun_nodes_train_one_job_written_once(data_root, tmp_path) -> None:
    """torchrun --nnodes=2 on 127.0.0.1: each "node" runs hwbench in the process torchrun started; rank 0 alone
    writes the record, prints the closing line and logs to hwbench.log; rank 1 logs to ddp_rank1.log."""
    folder, port = tmp_path / "run", free_port()
    env = {**os.environ, "HWBENCH_DATA": data_root, "PYTHONUNBUFFERED": "1"}
    nodes = [
        subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                          f"--node-rank={k}", "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "hwbench",
                          "device.nodes=2", "device.devices=1", "epochs=1", *SHORT, f"hydra.run.dir={folder}"],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in (0, 1)
    ]  # fmt: skip
    (out0, err0), (out1, err1) = (node.communicate(timeout=600) for node in nodes)
    assert [node.returncode for node in nodes] == [0, 0], err0[-3000:] + err1[-3000:]
    assert [p.name for p in tmp_path.rglob("results.json")] == ["results.json"]  # written once, in the one folder
    record = read_record(folder / "results.json")
    assert (record.status, record.world_size, record.nodes, record.devices_per_node) == ("ok", 2, 2, 1)
    assert (record.strategy, record.backend) == ("DDPStrategy", "gloo")
    assert record.job.shared == RUNS_HERE  # no job process of hwbench's own inside torchrun's
    assert record.summary() in out0 and "ffnn cpu 2 nodes x1 epochs=1: test acc" in out0
    assert "test acc" not in out1 + err1 and "epoch 1/1 done" not in out1 + err1  # rank 1 prints nothing
    assert "GLOBAL_RANK: 1" in (folder / "ddp_rank1.log").read_text()
    assert "GLOBAL_RANK: 1" not in (folder / "hwbench.log").read_text()
    assert SRUN_HINT not in out0 + err0 + out1 + err1
    assert json.loads((folder / "results.json").read_text())["config"]["device"]["nodes"] == 2


def test_nodes_with_nothing_to_start_their_ranks_is_refused_in_one_line(hwbench_cli, tmp_path) -> None:
    """Before, Lightning waited forever for the other node's rank."""
    result = hwbench_cli("device.nodes=2", "epochs=1", *SHORT)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: ffnn cpu 2 nodes x1 epochs=1: failed: device.nodes=2 needs its ranks on the other nodes started for "
        "it: by SLURM (-m hydra/launcher=slurm) or by torchrun on each node (docs/cluster.md)"
    )
