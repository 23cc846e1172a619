"""How a job's process starts and stops: a fresh process per job, the extra DDP ranks, and the signals that end a run
so that it records what it finished."""
