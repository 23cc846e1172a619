"""At the end of a sweep: where its wall time went, added up from its jobs' records (their process's start and
their phases), and what was left between the jobs (Hydra, the processes' ends)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from hwbench.record.results import RECORD_NAME, ResultsRecord, read_record

PHASES = {"prepare": "preparing", "train": "training", "test": "testing and inference", "write": "writing"}


class SweepTime(Callback):
    def __init__(self) -> None:
        self.started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.monotonic()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.started is not None:
            records = sweep_records(Path(str(config.hydra.sweep.dir)))
            print(time_line(list(records.values()), time.monotonic() - self.started), flush=True)


def sweep_records(sweep: Path) -> dict[str, ResultsRecord]:
    """The records of the sweep's jobs that wrote a readable one, by folder name."""
    found = {}
    for path in sorted(sweep.glob(f"*/{RECORD_NAME}")):
        try:
            found[path.parent.name] = read_record(path)
        except ValueError:  # damaged: counts for nothing here (not_ok_in names it)
            continue
    return found


def time_line(records: list[ResultsRecord], wall: float) -> str:
    """'time: 48.3 s for 4 jobs: starting 2.1 s, preparing 9.0 s, training 20.1 s, testing and inference 8.0 s,
    writing 1.2 s, between jobs 7.9 s': the jobs' sums; under a launcher that runs jobs at once they may pass
    the wall time, and nothing is said to be between them."""
    sums = {"starting": sum(r.job.start_seconds or 0.0 for r in records if r.job)}
    for key, name in PHASES.items():
        sums[name] = sum(getattr(r.phases, key) for r in records if r.phases)
    parts = [f"{name} {seconds:.1f} s" for name, seconds in sums.items()]
    if (rest := wall - sum(sums.values())) > 0:
        parts.append(f"between jobs {rest:.1f} s")
    return f"time: {wall:.1f} s for {len(records)} job(s): {', '.join(parts)}"
