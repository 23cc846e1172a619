"""Hydra's side of hwbench: callbacks around the jobs of a run or sweep, Hydra's errors as one line, and repeats as
a sweep dimension."""
