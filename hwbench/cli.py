"""Entry points: ``python -m hwbench`` runs Hydra jobs and sweeps; ``hwbench compare`` compares results."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig

from hwbench.errors import DeviceUnavailable, HwbenchError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")  # absolute: works under python -m too
log = logging.getLogger("hwbench")
failed_jobs: list[str] = []  # jobs of this sweep that failed; the sweep goes on, the exit code says so


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def train(cfg: DictConfig) -> None:
    from hwbench.train import run, summary_line  # torch and lightning load after Hydra parses the args

    hydra_cfg = HydraConfig.get()
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        print(summary_line(run(cfg, Path(hydra_cfg.runtime.output_dir))), flush=True)
    except DeviceUnavailable as err:
        if not sweeping:
            sys.exit(f"error: {err}: pick a device this machine has (device=cpu or device=auto)")
        print(f"{cfg.run_name}: skipped: {err}", flush=True)  # a sweep records the skip and moves on
    except (HwbenchError, InstantiationException) as err:  # bad input: config values Hydra could not build
        message = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
        if not sweeping:
            sys.exit(f"error: {message}")
        print(f"{cfg.run_name}: error: {message}", file=sys.stderr, flush=True)
        failed_jobs.append(cfg.run_name)
    except Exception as err:
        if not sweeping:
            raise  # an unexpected failure of a single run: the traceback is the useful report
        log.exception("job %s failed", cfg.run_name)
        print(f"{cfg.run_name}: failed: {err}", file=sys.stderr, flush=True)
        failed_jobs.append(cfg.run_name)


def main() -> None:
    if sys.argv[1:2] == ["compare"]:
        from hwbench.compare import main as compare

        sys.exit(compare(sys.argv[2:]))
    train()
    if failed_jobs:
        sys.exit(f"error: {len(failed_jobs)} job(s) failed: {', '.join(failed_jobs)} (see their results.json)")
