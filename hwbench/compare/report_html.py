"""report.html: the comparison as one self-contained page that people read and send (an email attachment, a
shared drive): the answer first, then the plots, the machines, the runs left out, and how it was made.

Self-contained: the CSS is inline, the plots are the report's PNGs as data: URIs, and nothing is fetched from
anywhere (its Content-Security-Policy forbids scripts and any request). Every piece of text from a record passes
through ``text`` (printable, then HTML-escaped): records are untrusted input. The page summarises setups, never
lists 50,000 runs: its size grows with the setups and machines, not the records.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from hwbench.compare.columns import cell
from hwbench.compare.rows import Machine, Row
from hwbench.compare.safe_text import printable
from hwbench.compare.setups import Setup, epochs_words, median, varying
from hwbench.compare.tables import NOT_OK_TITLE, not_ok_table

MAX_SETUP_ROWS = 60  # per network, the fastest; the rest are in compare.csv
MAX_FLAGGED_ROWS = 30  # noisy or host-bound runs listed one by one; more are counted by setup
MAX_HOSTS = 6  # hosts named per machine
PLOTS = {  # file name: what its caption says, in the order the report shows them
    "throughput.png": "Training throughput per setup (median of its runs; whisker: slowest to fastest run).",
    "accuracy_vs_time.png": "Validation accuracy against cumulative training seconds.",
    "time_to_accuracy.png": "Training seconds to 97, 98 and 99% validation accuracy.",
    "scaling.png": "Scaling: training throughput against the device count.",
    "flops_vs_peak.png": "FLOP/s the training reached against the machine's measured matmul peak (and the "
    "datasheet's, where known): how much of the hardware the network uses.",
    "rate_over_run.png": "Each epoch's training samples/s: a slow phase within a run shows as a dip.",
    "cost_vs_time.png": "What a result costs against how long it takes, one point per priced setup; the "
    "cheaper-and-faster front is marked.",
}
STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 0 auto;
       max-width: 1100px; padding: 1.5em; }
h1 { font-size: 1.7em; margin-bottom: .2em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-bottom: .3em; } .meta, .note, figcaption { color: #555; font-size: .9em; }
.answer { font-size: 1.1em; background: #f3f7f0; border-left: 4px solid #3a7d23; padding: .5em .8em; }
table { border-collapse: collapse; width: 100%; margin: .4em 0; font-size: .88em; }
th, td { border-bottom: 1px solid #e3e3e3; padding: .25em .45em; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f6f6f6; overflow-wrap: normal; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
code { background: #f4f4f4; padding: .1em .3em; overflow-wrap: anywhere; }
@page { size: A4; margin: 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  h2 { break-before: auto; break-after: avoid; } h3 { break-after: avoid; }
  figure, tr { break-inside: avoid; } thead { display: table-header-group; }
  table { font-size: 8pt; } .answer { background: none; }
}
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"  # no script runs, nothing is fetched


@dataclass
class Facts:
    """What the page says beyond the setups: where the records came from and how the report was made."""

    sources: list[Path]
    command: str
    version: str
    bases: dict[Any, Setup] = field(default_factory=dict)  # each network and epochs' baseline setup
    priced: bool = False
    made: datetime = field(default_factory=datetime.now)


def text(value: object) -> str:
    """Any text for the page: printable (no control or bidi character), cut at 4,096 characters, HTML-escaped."""
    return html.escape(printable(str(value)), quote=True)


def number(value: float | None, spec: str, suffix: str = "") -> str:
    return "" if value is None else f"{value:{spec}}{suffix}"


def html_table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[bool] = ()) -> str:
    """A table whose every cell is text (escaped here); columns empty in every row are left out."""
    body = [list(map(str, r)) for r in rows]
    keep = [k for k in range(len(headers)) if any(r[k] for r in body)]
    right = [k < len(numeric) and numeric[k] for k in range(len(headers))]
    head = "".join(f"<th>{text(headers[k])}</th>" for k in keep)
    lines = "".join("<tr>" + "".join(f"<td{' class=n' if right[k] else ''}>{text(r[k])}</td>" for k in keep) + "</tr>"
                    for r in body)  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>"


# ---- the answer: per network, the setups ranked by training speed ----------------------------------------
def interval(setup: Setup) -> str:
    """The 95% CI of the median where the setup has one, else its runs' min-max."""
    if setup.interval is not None:
        return f"95% CI {setup.interval.low:,.0f}-{setup.interval.high:,.0f}"
    return f"runs {setup.spread}" if setup.spread else ("1 run" if setup.runs else "")


def verdict(setup: Setup) -> str:
    """Plain words: the verdict against the baseline setup, with the speed-up and its 95% CI where claimed."""
    if setup.verdict is None:
        return "no other setup to compare with"
    ci = setup.speedup_ci
    interval = f" (95% CI {ci.low:.2f}-{ci.high:.2f}x)" if ci else ""
    if setup.verdict == "baseline" or setup.speedup is None:
        return setup.verdict
    return f"{setup.verdict}: {setup.speedup:.2f}x the baseline{interval}"


def answer(setups: Sequence[Setup], facts: Facts) -> str:
    parts = ["<section id=answer><h2>Which setup trains fastest</h2>"]
    if not setups:
        return parts[0] + "<p>No run has a training speed: see the runs without a result below.</p></section>"
    for arch in dict.fromkeys(s.arch for s in setups):
        mine = sorted((s for s in setups if s.arch == arch), key=lambda s: -(s.train_samples_per_sec or 0.0))
        best = mine[0]
        varied = varying(mine)
        sentence = (f"Fastest: {setup_name(best, varied)}, {number(best.train_samples_per_sec, ',.0f')} training "
                    f"samples/s{f' (median of {best.runs} runs)' if best.runs > 1 else ''}")  # fmt: skip
        word = verdict(best)
        if best.train_samples_per_sec is None:
            sentence = "No run of this network counts (noisy or unsteady runs are left out): see below"
        elif word == "baseline":
            sentence += "; the baseline the others' speed-ups are against"
        elif word and word != "no other setup to compare with":
            sentence += f"; {word}"
        common = setup_name(best, [p for p in ("execution", "precision", "batch_size", "epochs") if p not in varied])
        alike = common.removeprefix(best.hardware).strip(", ")
        heading = f"{arch}{f': every setup {alike}' if alike and len(mine) > 1 else ''}"
        parts.append(f"<h3>{text(heading)}</h3><p class=answer>{text(sentence)}.</p>")
        rows = [[rank, setup_name(s, varied), s.runs, number(s.train_samples_per_sec, ",.0f"), interval(s),
                 verdict(s), number(s.test_acc, ".4f"),
                 number(median(r.seconds_to_97 for r in s.rows), ".1f"),
                 number(s.kwh_per_million_samples, ".4f"), number(s.usd_per_million_samples, ".4f"),
                 number(s.usd_to_97, ".4f"), number(s.usd_to_99, ".4f"), s.left_out or ""]
                for rank, s in enumerate(mine[:MAX_SETUP_ROWS], 1)]  # fmt: skip
        headers = ["#", "setup", "runs", "train samples/s", "spread", "verdict", "test acc", "to 97% s",
                   "kWh/M samples", "USD/M samples", "USD to 97%", "USD to 99%", "left out"]  # fmt: skip
        parts.append(html_table(headers, rows, [True, False, True, True, True, False, True, True, True, True, True,
                                                True]))  # fmt: skip
        if len(mine) > MAX_SETUP_ROWS:
            parts.append(f"<p class=note>The {MAX_SETUP_ROWS} fastest of {len(mine)} setups; compare.csv has "
                         f"every run.</p>")  # fmt: skip
    parts.append(f"<p class=note>{text(answer_note(facts))}</p></section>")
    return "".join(parts)


def setup_name(setup: Setup, parts: Sequence[str]) -> str:
    """Its hardware and the ``parts`` named (source, execution, precision, batch size, epochs)."""
    hardware = f"{setup.source}: {setup.hardware}" if "source" in parts and setup.source else setup.hardware
    words = {"source": None, "execution": setup.execution,
             "precision": setup.precision and f"precision {setup.precision}",
             "batch_size": setup.batch_size and f"batch {setup.batch_size}",
             "epochs": epochs_words(setup.epochs)}  # fmt: skip
    return ", ".join(str(w) for w in [hardware, *(words[p] for p in parts)] if w)


def answer_note(facts: Facts) -> str:
    described = "; ".join(f"{arch}: {setup_name(base, ('source', 'execution', 'precision', 'batch_size'))}"
                          for (arch, _), base in facts.bases.items())  # fmt: skip
    note = ("A setup is a network on one kind of hardware with one execution, precision, batch size and length; "
            "its speed is the median of its runs that count (noisy and unsteady runs are left out), with its 95% "
            "bootstrap interval. ")  # fmt: skip
    note += (
        (
            f"Speed-ups are against the baseline ({described}); faster or slower only when the whole 95% "
            f"interval of the speed-up lies beyond 2%. "
        )
        if described
        else ""
    )
    note += "Cost: the prices given with --price/--prices, per device-hour." if facts.priced else ""
    return note


# ---- the plots, the machines, the runs left out --------------------------------------------------------
def figures(out: Path, plots: Sequence[str]) -> str:
    parts = ["<section id=plots><h2>Plots</h2>"]
    for name in (n for n in PLOTS if n in plots):
        data = base64.b64encode((out / name).read_bytes()).decode("ascii")
        caption = text(PLOTS[name])
        parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                     f"<figcaption>{caption} ({text(name)} beside this page)</figcaption></figure>")  # fmt: skip
    return "".join(parts) + "</section>"


MACHINE_HEADERS = ["hosts", "runs", "CPU", "cores", "RAM GB", "GPUs", "driver", "CUDA", "torch", "Lightning",
                   "Python", "OS"]  # fmt: skip


def machines(rows: Sequence[Row]) -> str:
    """One row per fingerprint (the hosts that share it named), from every record that has one."""
    by_object: dict[int, tuple[Machine, set[str], list[int]]] = {}  # rows share their machine's tuple: no hashing
    for r in rows:
        if r.machine is not None:
            _, hosts, runs = by_object.setdefault(id(r.machine), (r.machine, set(), [0]))
            hosts.add(r.host or "?")
            runs[0] += 1
    groups: dict[Machine, tuple[set[str], list[int]]] = {}
    for m, hosts, runs in by_object.values():  # equal tuples from other worker processes: one machine
        all_hosts, all_runs = groups.setdefault(m, (set(), [0]))
        all_hosts |= hosts
        all_runs[0] += runs[0]
    table = []
    for m, (hosts, runs) in groups.items():
        named = sorted(hosts)
        more = f" and {len(named) - MAX_HOSTS} more" if len(named) > MAX_HOSTS else ""
        table.append([", ".join(named[:MAX_HOSTS]) + more, runs[0], m.cpu, m.cores, number(m.ram_gb, ",.1f"),
                      *(v or "" for v in m[3:])])  # fmt: skip
    body = html_table(MACHINE_HEADERS, table, [False, True, False, False, True]) if table else "<p>None recorded.</p>"
    return f"<section id=machines><h2>The machines</h2>{body}</section>"


def not_ok_section(not_ok: list[Row]) -> str:
    if not not_ok:
        return ""
    columns, rows = not_ok_table(not_ok)
    body = html_table([c.header for c in columns], ([cell(c, r) for c in columns] for r in rows),
                      [c.spec is not None for c in columns])  # fmt: skip
    return f"<section id=not-ok><h2>{text(NOT_OK_TITLE)}</h2>{body}</section>"


def flagged_section(ok: Sequence[Row]) -> str:
    """The noisy runs (the machine was busy) and host-bound ones (the GPU mostly idle), with why."""
    flagged = [r for r in ok if r.noisy or r.host_bound or r.unsteady]
    if not flagged:
        return ""

    def why(r: Row) -> str:
        bound = f"host-bound: the GPU busy {r.gpu_busy_percent:.0f}% of the time" if r.host_bound else ""
        return "; ".join(w for w in (r.noisy and f"noisy: {r.noisy}", r.unsteady and f"unsteady: {r.unsteady}", bound)
                         if w)  # fmt: skip

    if len(flagged) <= MAX_FLAGGED_ROWS:
        headers = ["arch", "source", "job", "host", "hardware", "train samples/s", "why"]
        rows = [[r.arch, r.source, r.job, r.host or "", r.hardware, number(r.train_samples_per_sec, ",.0f"), why(r)]
                for r in flagged]  # fmt: skip
        body = html_table(headers, rows, [False, False, False, False, False, True])
    else:
        counts: dict[tuple[str, str], list] = {}
        for r in flagged:
            counts.setdefault((r.arch, r.hardware), [0, why(r)])[0] += 1
        rows = [[arch, hw, n, first] for (arch, hw), (n, first) in counts.items()]
        body = html_table(["arch", "hardware", "runs", "why (the first run's)"], rows, [False, False, True])
    note = ("Noisy: the machine had other load while the run was timed; never a baseline. Host-bound: the GPU was "
            "busy under half the time, so the speed measures the host, not the GPU.")  # fmt: skip
    return f"<section id=flagged><h2>Noisy and host-bound runs</h2>{body}<p class=note>{text(note)}</p></section>"


def page(out: Path, rows: Sequence[Row], setups: Sequence[Setup], plots: Sequence[str], facts: Facts) -> str:
    ok = [r for r in rows if r.status == "ok"]
    not_ok = [r for r in rows if r.status != "ok"]
    sources = ", ".join(map(str, facts.sources))
    meta = (f"{len(rows):,} records ({len(ok):,} ok, {len(not_ok):,} without a result) from {sources}; "
            f"{len(setups):,} setups; made {facts.made:%Y-%m-%d %H:%M} by hwbench {facts.version}.")  # fmt: skip
    made = (f"<footer><h2>How this report was made</h2><p><code>{text(facts.command)}</code></p>"
            f"<p class=meta>hwbench {text(facts.version)}; every run is in compare.csv beside this page.</p>"
            "</footer>")  # fmt: skip
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>hwbench report</title><style>{STYLE}</style></head><body>"
            f"<header><h1>hwbench report</h1><p class=meta>{text(meta)}</p></header>"
            + answer(setups, facts) + figures(out, plots) + machines(rows) + not_ok_section(not_ok)
            + flagged_section(ok) + made + "</body></html>\n")  # fmt: skip


def write_html(path: Path, rows: Sequence[Row], setups: Sequence[Setup], plots: Sequence[str], facts: Facts) -> None:
    """report.html in ``path``'s folder, beside the PNGs ``plots`` it embeds."""
    path.write_text(page(path.parent, rows, setups, plots, facts), encoding="utf-8")
