"""What a result costs: ``--price SPEC=USD_PER_HOUR`` and ``--prices FILE`` set each priced run's hourly price.

A price is per device and hour (a GPU, or the whole machine of a CPU run); a run on N devices costs N times
that. SPEC names runs as ``--baseline`` does (part of host/device/run_name or of a results.json path), or
part of their hardware ('H100', 'EPYC'). Where several specs name a run, the last given wins: the file's
first, then the command line's, in order. The costs themselves (USD per million samples, to 97% and 99%) are
derived on the rows (rows.py).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import yaml

from hwbench.compare.rows import Row

Price = tuple[str, float]  # spec, USD per device-hour
MAX_PRICES_BYTES = 1 << 20  # a price list is a few lines: a bigger file is not one


def parse_price(text: str, where: str = "--price") -> Price:
    """'vm=0.36' -> ('vm', 0.36); raises ValueError naming the fix."""
    spec, sep, value = text.rpartition("=")
    return checked(spec.strip(), value.strip() if sep else "", where, text)


def checked(spec: str, value: object, where: str, text: str) -> Price:
    try:
        usd = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        usd = math.nan
    if not spec or not math.isfinite(usd) or usd <= 0:
        raise ValueError(f"{where} {text!r}: give SPEC=USD_PER_HOUR, a part of host/device/run_name or hardware and "
                         f"a price above 0 per device-hour, e.g. --price 'H100=2.49'")  # fmt: skip
    return spec, usd


def read_prices(path: Path) -> list[Price]:
    """A YAML mapping (``SPEC: USD_PER_HOUR`` a line) or a CSV of two columns (spec, usd_per_hour; a header line
    is allowed); raises ValueError naming the fix."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_PRICES_BYTES + 1)
        if len(data) > MAX_PRICES_BYTES:
            raise ValueError("over 1 MiB")
        text = data.decode("utf-8")
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ValueError(f"--prices {path}: cannot read it ({reason})") from err
    where = f"--prices {path}:"
    if path.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
        if rows and rows[0][-1:] and not number(rows[0][-1]):
            rows = rows[1:]  # the header
        return [checked(r[0].strip(), r[1].strip() if len(r) == 2 else "", where, ",".join(r)) for r in rows]
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ValueError(f"{where} give a .yaml (SPEC: USD_PER_HOUR a line) or a .csv (spec,usd_per_hour) file")
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{where} not readable YAML ({str(err).splitlines()[0]})") from err
    if not isinstance(mapping, dict):
        raise ValueError(f"{where} give a mapping, one 'SPEC: USD_PER_HOUR' a line")
    return [checked(str(spec), value, where, f"{spec}: {value}") for spec, value in mapping.items()]


def number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def prices_named(price: list[str] | None, prices: Path | None) -> list[Price]:
    """The prices of --prices FILE then of each --price, in order (the last that names a run wins)."""
    return [*(read_prices(prices) if prices else []), *(parse_price(p) for p in price or [])]


def add_prices(rows: list[Row], prices: list[Price]) -> list[str]:
    """Set ``usd_per_hour`` (the price x the run's devices) on each ok run a price names; return the specs that
    name no run (the caller warns)."""
    ok = [r for r in rows if r.status == "ok"]
    for r in ok:
        usd = next((usd for spec, usd in reversed(prices) if prices_run(spec, r)), None)
        r.usd_per_hour = None if usd is None else usd * r.world_size
    return [spec for spec, _ in prices if not any(prices_run(spec, r) for r in ok)]


def prices_run(spec: str, row: Row) -> bool:
    """As --baseline names a run (part of host/device/run_name or of its results.json path), or by hardware."""
    return spec in row.label or spec in row.path or spec in row.hardware
