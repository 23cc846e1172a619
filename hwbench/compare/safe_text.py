"""Text from a record (or a folder name) made safe for where it goes: a terminal, compare.csv, compare.md, a plot.

Records come from other machines and other people: a host name may hold a terminal's escape codes, HTML, a
spreadsheet formula or a lone surrogate that no encoder accepts. Every piece of such text that compare shows
passes through one of the functions here, and nothing else decides what is safe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_TEXT = 4096  # characters of one value shown: a record's longest free text (its reason) fits
MAX_LABEL = 120  # characters of a plot's label or title: a setup's is under 100
CLIPPED = "…"

# Markdown (CommonMark, GitHub's tables) and HTML: what could start markup inside a table cell or a line of text
MARKDOWN = str.maketrans({c: f"\\{c}" for c in "\\`*[]|~#!$"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;"})
# '_' between two letters or digits never starts or ends emphasis (CommonMark): ffnn_cpu_e2 stays as it is
EMPHASIS_UNDERSCORE = re.compile(r"(?<!\w)_|_(?!\w)")
FORMULA_START = ("=", "+", "-", "@")  # a spreadsheet runs a cell that starts so as a formula
MATHTEXT = re.compile(r"(?<!\\)\$")  # matplotlib reads text between two '$' as TeX math


def escaped(char: str) -> str:
    """A character that prints nothing or moves the cursor (C0, DEL, C1, ESC, bidi and zero-width format
    characters, line separators, lone surrogates), spelled as Python spells it: ``\\x1b``, ``\\u202e``."""
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` with every character that is not printable escaped, cut at ``limit`` characters: what a
    terminal may receive. ``str.isprintable`` (C speed) passes almost every value as it is."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else escaped(c) for c in text)
    return text if len(text) <= limit else text[: limit - 1] + CLIPPED


def terminal(text: object) -> str:
    """For the console: no control character, no escape sequence (rich prints a ``Text`` without reading
    markup, so ``[bold]`` stays as it is)."""
    return printable(str(text))


def csv_field(value: object) -> object:
    """For compare.csv: numbers as they are; text printable, and never read as a formula by a spreadsheet."""
    if not isinstance(value, str):
        return value
    text = printable(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text


def csv_fixes(values: Iterable[object]) -> dict[str, str]:
    """Those of a column's values that csv_field changes, and what it makes of them: checking each distinct value
    once costs a tenth of passing 50,000 rows' fields through csv_field."""
    return {v: csv_field(v) for v in set(values) if isinstance(v, str) and csv_field(v) != v}  # type: ignore[misc]


def markdown(text: object) -> str:
    """For compare.md: printable, with every character that Markdown or HTML would read as markup escaped."""
    return EMPHASIS_UNDERSCORE.sub(r"\\_", printable(str(text)).translate(MARKDOWN))


def plot_label(text: object, limit: int = MAX_LABEL, tag: str = "") -> str:
    """For a plot's label or title: printable (a control character is a missing glyph), short, and no '$'
    that would start TeX math (a bad formula stops the drawing). ``tag`` ends it whole, however long the text."""
    return MATHTEXT.sub(r"\\$", printable(str(text), max(1, limit - len(tag))) + printable(tag, limit))
