"""Where the records are, split so that worker processes search and read them side by side: listing 50,000
job folders is seconds of system calls, more when the file system's cache has gone cold.

The parent lists the top of the tree, level by level, until a level has enough folders; each worker then
searches its share of them with ``hwbench.results.record_paths``. Only plain levels are listed here: a level
with a linked or unreadable folder is handed on as it is, so record_paths alone decides what links mean.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from hwbench.results import RECORD_NAME


def listing(folder: Path) -> tuple[list[Path], list[Path]] | None:
    """A folder's subfolders and its record, if it has one; None where it holds a link or cannot be listed.
    Hidden folders (.hydra, .submitit) never hold a record: record_paths does not search them either."""
    subfolders, records = [], []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_symlink():
                    return None
                if entry.name == RECORD_NAME:
                    records.append(Path(entry.path))
                elif not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                    subfolders.append(Path(entry.path))
    except OSError:
        return None
    return subfolders, records


def split(folders: Iterable[str | Path], want: int) -> tuple[list[Path], list[Path]]:
    """The records near the top of ``folders``, and folders whose subtrees hold every other record: a whole
    level of the tree, the first with at least ``want`` folders (fewer where the tree ends first)."""
    given = sorted({Path(f) for f in folders})
    level = [f for f in given if not any(f != g and f.is_relative_to(g) for g in given)]  # each record once
    found: list[Path] = []
    while 0 < len(level) < want and not any(f.is_symlink() for f in level):
        listed = [entries for entries in map(listing, level) if entries is not None]
        if len(listed) < len(level):
            break
        found += [record for _, records in listed for record in records]
        level = sorted(sub for subfolders, _ in listed for sub in subfolders)
    return sorted(found), level
