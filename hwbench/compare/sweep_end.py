"""At the end of a sweep with repeats: each network's fastest setup and the verdict against the next (a Hydra
callback in compare's layer, since it reads the sweep's records as compare does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepVerdicts(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if int(config.get("repeats", 1)) > 1:
            for line in verdict_lines(Path(str(config.hydra.sweep.dir))):
                print(line, flush=True)


def verdict_lines(sweep: Path) -> list[str]:
    """One line per network and epochs of the sweep's ok runs; the count of runs first."""
    from hwbench.compare.reading import read_rows  # compare's modules load only where a sweep ends
    from hwbench.compare.safe_text import terminal
    from hwbench.compare.setups import group_setups
    from hwbench.compare.verdicts import fastest_lines

    rows = read_rows([sweep], processes=1)
    ok = [r for r in rows if r.status == "ok"]
    setups = group_setups(ok)
    left_out = sum(len(s.excluded) for s in setups)
    counted = f"{len(rows)} runs, {len(ok)} ok" + (f", {left_out} noisy or unsteady (left out)" if left_out else "")
    return [terminal(line) for line in [counted, *fastest_lines(setups)]]
