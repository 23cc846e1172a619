"""When a figure is flagged: every threshold that makes a run noisy or unsteady, set here only (the README and
docs/measurement.md document them)."""

OTHERS_CPU_PERCENT_ABOVE = 10.0  # CPU time of processes outside the job, in % of all the cores' time
STEAL_PERCENT_ABOVE = 5.0  # the hypervisor's steal, in % of all the cores' time
# and on a GPU: any other process on the job's device, any thermal or power throttling of it in the window
CANARY_CHANGE_ABOVE = 0.15  # the canary's rate after the timed window against before it: a slow phase /proc misses
UNSTEADY_IQR_OVER_MEDIAN = 0.10  # the run's own windows: interquartile range over median (torch.utils.benchmark's)
