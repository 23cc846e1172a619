"""``hwbench-compare``: many runs' results.json as tables and plots.

cli.py      the command: read, compute, print, write
reading.py  the records found and read into rows by worker processes, one record at a time
rows.py     one compact row per record
setups.py   rows grouped by setup (network, hardware, execution, precision, batch, epochs): medians, intervals
bootstrap.py  the percentile bootstrap of medians and their ratios; Mann-Whitney's U test
verdicts.py speed-ups between setups, with intervals and verdicts, in words
scaling.py  scaling with devices
columns.py  the columns, their formats, and which the console shows by default
tables.py   the console table (as wide as the terminal), compare.csv, compare.md
plots.py    throughput, accuracy against time, scaling (PNG)
pricing.py  --price/--prices: what each run's devices cost an hour, hence USD per result
report_plots.py  cost against time, FLOP/s against the peak, the rate over a run, time to 97/98/99% (PNG)
report_html.py   report.html: the comparison on one self-contained page (the answer first, plots inline)
workers.py  the worker processes
"""

from hwbench.compare.cli import main

__all__ = ["main"]
