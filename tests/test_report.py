"""report.html, opened in a real headless Chromium from file://, and what a result costs (--price, --prices).

The page is made from two runs of a real sweep (short CPU runs, copied as if from two machines, "vm-a" and
"box"), and from hostile records; Chromium's own net log says which requests the page made, its stderr which
console messages.
"""

from __future__ import annotations

import copy
import html.parser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from filelock import FileLock
from PIL import Image
from test_compare import JOBS, read_csv, shared_sweep, sweep_outputs, synthetic
from test_records import OK
from test_untrusted_records import ESCAPES, HOSTILE, put

from hwbench.compare.cli import main as compare
from hwbench.compare.pricing import add_prices
from hwbench.compare.reading import read_rows
from hwbench.compare.report_html import PLOTS
from hwbench.compare.report_plots import cost_plot
from hwbench.compare.setups import group_setups

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium)")
IMG_ONERROR = '<img src=x onerror="alert(1)">'
PNG_DATA = "data:image/png;base64,"


@pytest.fixture(scope="module")
def two_machines(data_root: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real short FFNN runs (1 and 2 CPU threads: the first repeat of test_compare's shared sweep, made quiet
    there), each job's folder copied under the name of a machine, its record's host set to it: what a user has
    after collecting runs from two machines. Made once a session: pytest-xdist's workers share it (their
    basetemps share a parent)."""
    sweep = sweep_outputs(shared_sweep(data_root, tmp_path_factory))
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "report-sweep"
    with FileLock(f"{root}.lock"):
        if not (root / "collected").is_dir():
            make_two_machines(sweep, root)
    return root / "collected"


def make_two_machines(sweep: Path, root: Path) -> None:
    (folder,) = (sweep / "multiruns").iterdir()
    jobs = [folder / job / "results.json" for job in JOBS[:2]]  # device.threads=1, then 2: one run each
    for host, path in zip(("vm-a", "box"), jobs, strict=True):
        record = json.loads(path.read_text())
        record["fingerprint"]["host"] = host
        put(root / "staging" / host / path.parent.name, record)
    (root / "staging").rename(root / "collected")  # whole, or not there


def chromium(page: Path, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Chromium headless on ``page`` from file://, with console messages on stderr; returns the run and the URLs
    the page requested (from Chromium's net log: requests whose top frame is a file://; Chromium's own background
    requests have another)."""
    netlog = tmp_path / f"netlog-{len(list(tmp_path.glob('netlog-*')))}.json"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--disable-background-networking",
           "--disable-component-update", "--enable-logging=stderr", "--v=0", f"--log-net-log={netlog}", *args,
           page.resolve().as_uri()]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requested = [e["params"]["url"] for e in log["events"] if e["type"] == start
                 and "file://" in e["params"].get("network_isolation_key", "")]  # fmt: skip
    return run, requested


def without_images(page: Path) -> str:
    """The page less its embedded PNGs (base64 may spell any word)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]*", "", page.read_text(encoding="utf-8"))


def console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


class Dom(html.parser.HTMLParser):
    """The rendered DOM's elements and text, as Chromium serialised it."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]


@needs_chromium
def test_report_html_opens_from_a_file_alone_and_shows_the_setups(two_machines: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    assert compare([str(two_machines), "--out", str(report), "--price", "vm=0.36"]) == 0
    page = report / "report.html"

    control = tmp_path / "control.html"  # the checks below can fail: a page that fetches and logs is caught
    control.write_text('<p>x</p><img src="http://127.0.0.1:9/x.png"><script>console.error("boom")</script>')
    run, requested = chromium(control, tmp_path, "--dump-dom")
    assert requested == ["http://127.0.0.1:9/x.png"] and any("boom" in line for line in console(run.stderr))

    shot = tmp_path / "shot.png"
    run, requested = chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,1800")
    assert requested == [] and console(run.stderr) == [], console(run.stderr)
    image = Image.open(shot).convert("RGB").resize((320, 450))
    colours = image.getcolors(maxcolors=320 * 450)
    white = sum(n for n, rgb in colours if min(rgb) > 245)
    assert len(colours) > 100 and white < 0.95 * 320 * 450  # text, tables and plots: not a blank page

    run, requested = chromium(page, tmp_path, "--dump-dom")
    assert requested == [] and console(run.stderr) == []
    dom = Dom(run.stdout)
    text = " ".join(dom.text)
    plots = [img["src"] for img in dom.all("img")]
    assert len(plots) >= 2 and all(src and src.startswith(PNG_DATA) for src in plots)
    assert dom.all("script") == [] and dom.all("link") == []
    rows = [" ".join(r.split()) for r in text.split("\n")]
    assert "every setup eager" in text
    for threads in (1, 2):  # each setup by its hardware, with its median and a verdict
        assert f", {threads} thr" in text
    medians = [float(r["train_samples_per_sec"]) for r in read_csv(report / "compare.csv")]
    assert all(f"{m:,.0f}" in text for m in medians), rows
    assert "baseline" in text and "too few runs: " in text and "x the baseline" in text  # one run a setup
    assert "vm-a" in text and "box" in text  # the machines, by host
    assert "hwbench-compare " in text and "--price vm=0.36" in text  # how it was made


def test_a_price_gives_the_cost_of_the_runs_it_names(two_machines: Path, tmp_path: Path) -> None:
    """--price 'vm=0.36': USD per million samples = 0.36 x 1e6 / samples/s / 3600 for the run on vm-a, none for
    the run on box; without a price, nothing about cost in any file."""
    assert compare([str(two_machines), "--out", str(tmp_path / "priced"), "--price", "vm=0.36"]) == 0
    rows = {r["host"]: r for r in read_csv(tmp_path / "priced" / "compare.csv")}
    vm, box = rows["vm-a"], rows["box"]
    speed = float(vm["train_samples_per_sec"])
    assert float(vm["usd_per_million_samples"]) == pytest.approx(0.36 * 1e6 / speed / 3600, rel=1e-12)
    assert float(vm["usd_per_hour"]) == 0.36 and vm["usd_to_97"] == ""  # 3,000 samples, 2 epochs: 97% is not reached
    assert box["usd_per_million_samples"] == box["usd_per_hour"] == ""
    page = (tmp_path / "priced" / "report.html").read_text()
    assert "USD/M samples" in page and (tmp_path / "priced" / "cost_vs_time.png").exists()

    assert compare([str(two_machines), "--out", str(tmp_path / "plain")]) == 0
    assert not any("usd" in key for key in read_csv(tmp_path / "plain" / "compare.csv")[0])
    assert "USD" not in without_images(tmp_path / "plain" / "report.html")
    assert not (tmp_path / "plain" / "cost_vs_time.png").exists()


def test_cost_to_accuracy_counts_every_device_and_the_last_price_wins(tmp_path: Path) -> None:
    """Synthetic records (runs on 1-4 H100s that reached 97%): --prices FILE, then --price over it; a DDP run's
    cost is the price of each of its devices; the front of the cost plot is marked."""
    synthetic().write_records(tmp_path / "records", 60)
    prices = tmp_path / "prices.yaml"
    prices.write_text("H100: 1.0\nvm: 0.5\n")
    report = tmp_path / "report"
    assert compare([str(tmp_path / "records"), "--out", str(report), "--prices", str(prices), "--price", "H100=2"]) == 0
    ok = [r for r in read_csv(report / "compare.csv") if r["status"] == "ok"]
    h100 = [r for r in ok if "H100" in r["hardware"]]
    reached = [r for r in h100 if r["seconds_to_97"]]
    assert len({r["world_size"] for r in h100}) > 1 and reached
    for r in h100:
        usd_per_hour = 2.0 * int(r["world_size"])
        assert float(r["usd_per_hour"]) == usd_per_hour
        assert float(r["usd_per_million_samples"]) == pytest.approx(usd_per_hour * 1e6 / float(
            r["train_samples_per_sec"]) / 3600)  # fmt: skip
        if r["seconds_to_97"]:
            assert float(r["usd_to_97"]) == pytest.approx(usd_per_hour * float(r["seconds_to_97"]) / 3600)
        else:
            assert r["usd_to_97"] == ""
    assert all(float(r["usd_per_hour"]) == 0.5 for r in ok if r["host"].startswith("vm"))
    assert all(r["usd_per_hour"] == "" for r in ok if "A100" in r["hardware"])  # no price names them
    assert f'alt="{PLOTS["cost_vs_time.png"]}"' in (report / "report.html").read_text()

    rows = read_rows([tmp_path / "records"])
    add_prices(rows, [("H100", 2.0), ("vm", 0.5)])
    panels = cost_plot(group_setups([r for r in rows if r.timed]))
    # some synthetic runs reach 97% and none 99%: a network where none reached 97% is costed per million samples
    assert {p.what for p in panels} == {"97% validation accuracy", "a million training samples"}  # type: ignore[union-attr]
    for panel in panels:  # type: ignore[union-attr]
        for p in panel.points:  # on the front: no other setup both as fast and as cheap, and faster or cheaper
            beaten = any(q.seconds <= p.seconds and q.usd <= p.usd and (q.seconds, q.usd) != (p.seconds, p.usd)
                         for q in panel.points)  # fmt: skip
            assert p.front == (not beaten)
        assert any(p.front for p in panel.points)


@pytest.mark.parametrize(("args", "says"), [
    (["--price", "vm"], "error: --price 'vm': give SPEC=USD_PER_HOUR"),
    (["--price", "vm=cheap"], "error: --price 'vm=cheap': give SPEC=USD_PER_HOUR"),
    (["--price", "=1"], "error: --price '=1': give SPEC=USD_PER_HOUR"),
    (["--price", "vm=-1"], "error: --price 'vm=-1': give SPEC=USD_PER_HOUR"),
    (["--prices", "PRICES/missing.yaml"], "error: --prices PRICES/missing.yaml: cannot read it (No such file"),
    (["--prices", "PRICES/bad.yaml"], "error: --prices PRICES/bad.yaml: not readable YAML"),
    (["--prices", "PRICES/list.yaml"], "error: --prices PRICES/list.yaml: give a mapping"),
    (["--prices", "PRICES/bad.csv"], "error: --prices PRICES/bad.csv: 'vm,1,2': give SPEC=USD_PER_HOUR"),
    (["--prices", "PRICES/prices.txt"], "error: --prices PRICES/prices.txt: give a .yaml"),
])  # fmt: skip
def test_a_bad_price_is_one_line_and_exit_2(tmp_path: Path, capsys, args: list[str], says: str) -> None:
    put(tmp_path / "records" / "job", OK)
    for name, content in {"bad.yaml": "vm: [1", "list.yaml": "- 1\n", "bad.csv": "spec,usd_per_hour\nvm,1,2\n",
                          "prices.txt": "vm 1"}.items():  # fmt: skip
        (tmp_path / name).write_text(content)
    args = [a.replace("PRICES", str(tmp_path)) for a in args]
    assert compare([str(tmp_path / "records"), "--out", str(tmp_path / "report"), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith(says.replace("PRICES", str(tmp_path))), err
    assert not (tmp_path / "report").exists()  # refused before anything was read or written


def test_a_price_that_names_no_run_is_a_warning(tmp_path: Path, capsys) -> None:
    put(tmp_path / "records" / "job", OK)
    prices = tmp_path / "prices.csv"
    prices.write_text("spec,usd_per_hour\nnowhere,1.5\n")
    assert compare([str(tmp_path / "records"), "--out", str(tmp_path / "report"), "--prices", str(prices)]) == 0
    assert "warning: --price 'nowhere' names no ok run" in capsys.readouterr().err
    assert "USD" not in without_images(tmp_path / "report" / "report.html")


def hostile_records(root: Path) -> None:
    """Escape codes, <script>, <img onerror> and huge strings in every place a record's text reaches the page."""
    noisy = copy.deepcopy(OK)
    noisy["fingerprint"] |= {"host": HOSTILE, "cpu": IMG_ONERROR, "os": HOSTILE, "torch": IMG_ONERROR}
    noisy["run_name"] = IMG_ONERROR
    noisy["machine_load"] = {"window_seconds": 1.0, "cores": 2, "gpu_other_processes": [f"pid 1 ({HOSTILE})"]}
    put(root / "hostile", noisy)
    failed = copy.deepcopy(noisy) | {"status": "failed", "reason": f"died {HOSTILE} {IMG_ONERROR} " + "x" * 100_000}
    put(root / "failed", failed)
    put(root / "good", OK)


@needs_chromium
def test_hostile_records_render_as_text(tmp_path: Path) -> None:
    hostile_records(tmp_path / "records")
    report = tmp_path / "report"
    assert compare([str(tmp_path / "records"), "--out", str(report), "--price", f"{IMG_ONERROR}=1"]) == 0
    page = (report / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<img src=x" not in page and 'onerror="' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "\x1b" not in page and "\x07" not in page and "\u202e" not in page
    assert "\\x1b[2J" in page and "\\u202e" in page  # the record's text, its codes spelled out
    assert len(page) < 3_000_000  # the 100,000-character reason was cut, not copied

    run, requested = chromium(report / "report.html", tmp_path, "--dump-dom")
    assert requested == [] and console(run.stderr) == []
    dom = Dom(run.stdout)
    assert dom.all("script") == [] and all((img["src"] or "").startswith(PNG_DATA) for img in dom.all("img"))
    text = "".join(dom.text)
    assert "<script>alert(1)</script>" in text and IMG_ONERROR in text  # shown, as text
    assert ESCAPES not in text
