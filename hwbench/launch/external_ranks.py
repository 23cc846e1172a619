"""Stop signals in a job whose ranks were started outside Lightning: by hwbench itself (hwbench.launch.ddp), torchrun
or SLURM.

Lightning's SIGTERM handler broadcasts from rank 0 inside the signal handler, under DDP: a collective that the other
rank may not be in (it took its own SIGTERM at its own point, or sits in another collective: DDP's gradient
all-reduce, a barrier), so both ranks wait on each other until SLURM kills them after KillWait, with the record still
"running"; and it passes the signal on only to ranks its own launcher started, none here. hwbench's own handler takes
SIGTERM back each time Lightning has set its own: Lightning (re)registers it in every ``Trainer.fit`` and ``test``
after ``on_fit_start`` and before the loop's first hook, so it is taken back at the start of training and of the
test. Each rank then stops at its own point (the ranks hwbench started are passed the signal by it:
StopSignals.pass_on_to); one that waits in a collective for a rank that has stopped gets the closed connection's
error and takes its own signal then (hwbench.job.runner).
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

    def take_back(self, trainer: Any) -> None:
        if self.stop is None or trainer.world_size == 1:
            return
        # a signal already taken leaves every stop signal ignored (StopSignals.handle): Lightning's made SIGTERM live
        signal.signal(signal.SIGTERM, self.stop.handle if self.stop.first is None else signal.SIG_IGN)

    def on_train_start(self, trainer: Any, *args: Any) -> None:
        self.take_back(trainer)

    def on_test_start(self, trainer: Any, *args: Any) -> None:
        self.take_back(trainer)


def refuse_lone_node(cfg: Any) -> None:
    """device.nodes > 1 where nothing starts the other nodes' ranks: Lightning would wait for them forever."""
    if cfg.device.nodes > 1 and not (slurm.under_slurm() or torchrun.started_here() or "NODE_RANK" in os.environ):
        raise ConfigError(f"device.nodes={cfg.device.nodes} needs its ranks on the other nodes started for it: by "
                          f"SLURM (-m hydra/launcher=slurm) or by torchrun on each node (docs/cluster.md)")  # fmt: skip
