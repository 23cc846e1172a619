"""Stop signals in a job whose ranks were started outside Lightning: by hwbench itself (hwbench.launch.ddp), torchrun
or SLURM.

Lightning's SIGTERM handler broadcasts from rank 0 inside the signal handler, under DDP: a collective that no other
rank is in (each took its own SIGTERM, or is gone) waits forever, and SLURM kills the job after KillWait with its
record still "running"; and it passes the signal on only to ranks its own launcher started, none here. hwbench's own
handler takes SIGTERM back once Lightning has set its own, in training and in test; each rank then stops at its own safe
point (the ranks hwbench started are passed the signal by it: StopSignals.pass_on_to), and one that waits for a rank
that has gone gets the connection's error.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from lightning import Callback

from hwbench.errors import ConfigError
from hwbench.launch import slurm, torchrun
from hwbench.launch.signals import StopSignals


class StopWithoutBroadcast(Callback):
    def __init__(self, stop: StopSignals | None) -> None:
        self.stop = stop

    # Lightning sets its handler after on_fit_start, before on_train_start; and again in trainer.test
    def on_train_start(self, trainer: Any, *args: Any) -> None:
        if self.stop is None or trainer.world_size == 1 or self.stop.first is not None:
            return
        signal.signal(signal.SIGTERM, self.stop.handle)

    def on_test_start(self, trainer: Any, *args: Any) -> None:
        self.on_train_start(trainer)


def refuse_lone_node(cfg: Any) -> None:
    """device.nodes > 1 where nothing starts the other nodes' ranks: Lightning would wait for them forever."""
    if cfg.device.nodes > 1 and not (slurm.under_slurm() or torchrun.started_here() or "NODE_RANK" in os.environ):
        raise ConfigError(f"device.nodes={cfg.device.nodes} needs its ranks on the other nodes started for it: by "
                          f"SLURM (-m hydra/launcher=slurm) or by torchrun on each node (docs/cluster.md)")  # fmt: skip
