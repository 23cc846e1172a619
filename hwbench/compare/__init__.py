"""``hwbench-compare``: many runs' results.json as tables and plots.

cli.py      the command: read, compute, print, write
rows.py     one compact row per record, read one record at a time; speed-ups and scaling
setups.py   rows grouped by setup (network, hardware, precision, batch): medians and spreads at scale
columns.py  the columns, their formats, and which the console shows by default
tables.py   the console table (as wide as the terminal), compare.csv, compare.md
plots.py    throughput, accuracy against time, scaling (PNG)
"""

from hwbench.compare.cli import main

__all__ = ["main"]
