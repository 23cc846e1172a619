"""Stop signals in a job whose ranks SLURM or torchrun started on several nodes.

Lightning's SIGTERM handler broadcasts from rank 0 inside the signal handler, under DDP: a collective that no other
rank is in (each took its own SIGTERM, or is gone) waits forever, and SLURM kills the job after KillWait with its
record still "running". Where the ranks were started outside this process, hwbench's own handler takes SIGTERM
back once Lightning has set its own; each rank then stops at its own safe point, and one that waits for a rank
that has gone gets the connection's error. (Where Lightning starts the ranks itself, its handler also passes the
signal on to them: kept.)
"""

from __future__ import annotations

import signal
from typing import Any

from lightning import Callback

from hwbench.launch import slurm, torchrun
from hwbench.launch.signals import StopSignals


class StopWithoutBroadcast(Callback):
    def __init__(self, stop: StopSignals | None) -> None:
        self.stop = stop

    def on_fit_start(self, trainer: Any, *args: Any) -> None:
        if self.stop is None or trainer.world_size == 1 or self.stop.first is not None:
            return
        if torchrun.started_here() or slurm.under_slurm():
            signal.signal(signal.SIGTERM, self.stop.handle)
