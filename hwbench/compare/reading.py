"""Reading the records into rows, in worker processes: listing 50,000 job folders and parsing their records
is seconds of system calls and JSON, more when the file system's cache has gone cold.

The parent lists the top of the folder tree, level by level, until a level has enough folders; each worker
searches its share of them with :func:`record_paths` and reads what it finds, one record at a
time. Only plain levels are listed here: a level with a linked or unreadable folder is handed on as it is,
so record_paths alone decides what links mean.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hwbench.compare.rows import ROW_VALUES, Row, to_row
from hwbench.compare.safe_text import terminal
from hwbench.compare.workers import usable_cpus, workers
from hwbench.record.results import RECORD_NAME, read_record


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
                    if entry.is_file(follow_symlinks=False):  # the file type from the listing: no system call
                        records.append(Path(entry.path))
                    else:
                        warn_skipping(entry.path, "not a regular file")
                elif not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                    subfolders.append(Path(entry.path))
    except OSError:
        return None
    return subfolders, records


def split(folders: Iterable[str | Path], want: int) -> tuple[list[Path], list[Path]]:
    """The records near the top of ``folders``, and folders whose subtrees hold every other record: a whole
    level of the tree, the first with at least ``want`` folders (fewer where the tree ends first)."""
    level = outermost(folders)
    found: list[Path] = []
    while 0 < len(level) < want and not any(f.is_symlink() for f in level):
        listed = [entries for entries in map(listing, level) if entries is not None]
        if len(listed) < len(level):
            break
        found += [record for _, records in listed for record in records]
        level = sorted(sub for subfolders, _ in listed for sub in subfolders)
    return sorted(found), level


def outermost(folders: Iterable[str | Path]) -> list[Path]:
    """The folders given, each once however it was named (``runs``, ``$PWD/runs``, a link to it), less those
    inside another given one: compared by their resolved paths, shown as first given."""
    given: dict[Path, Path] = {}
    for folder in folders:
        given.setdefault(Path(os.path.realpath(folder)), Path(folder))
    inner = {real for real in given if any(real != r and real.is_relative_to(r) for r in given)}
    return sorted(shown for real, shown in given.items() if real not in inner)


def read_rows(
    folders: Iterable[str | Path], processes: int | None = None, meanwhile: Callable[[], object] = lambda: None
) -> list[Row]:
    """A row for every valid record under ``folders``, sorted by network, device, host, device count, start.

    An invalid record is named on stderr in one line and skipped: one truncated or hand-edited copy from
    another machine should not hide every other result. Worker processes (``processes``, default two per CPU:
    one computes while the other waits for the disk) list the folders and read the records, one at a time,
    each dropped once its row is made; this process runs ``meanwhile`` while they do.
    """
    processes = processes or 2 * usable_cpus()
    folders = list(folders)
    found, subtrees = split(folders, want=4 * processes)
    n = min(len(subtrees), 4 * processes)
    tasks = [(found, [])] + [([], subtrees[len(subtrees) * k // n : len(subtrees) * (k + 1) // n]) for k in range(n)]
    with workers(len(tasks), processes) as pool:
        done = pool.map(rows_under, tasks)  # in order: the warnings come in path order
        meanwhile()
        return with_sources(collect(done), folders)


def with_sources(rows: list[Row], folders: list[str | Path]) -> list[Row]:
    """Each row's source: the folder argument its record was found under, as given ('laptop', not its full path),
    the outermost where one given folder holds another (as it is read: ``outermost``). Paths are found by joining
    onto the folders as given."""
    given = sorted({os.path.normpath(f) for f in map(str, folders)}, key=len)
    for row in rows:
        row.source = next((f for f in given if f == "." or row.path.startswith(f + os.sep)), given[-1] if given else "")
    return rows


Identity = tuple[int, int]  # a file's device and inode: the same record, whatever path leads to it
Found = tuple[list[tuple[Any, ...]], list[str], list[Identity]]  # a task's rows (as values), warnings, identities


def rows_under(task: tuple[list[Path], list[Path]]) -> Found:
    """The rows of the records of a task (records, and folders to search), each as its values (``ROW_VALUES``)
    with its file's identity, and a warning for each invalid record: whatever is wrong with one record (its size,
    depth, encoding, a value of a type no row expects) is its warning line, never the end of the comparison."""
    records, folders = task
    rows, warnings, identities = [], [], []
    for path, identity in [*map(identified, records), *record_entries(folders)]:
        try:
            rows.append(ROW_VALUES(to_row(path, read_record(path))))
            identities.append(identity)
        except ValueError as err:
            warnings.append(skipping(path, str(err)))
        except Exception as err:  # a record read_record let through and to_row could not use
            warnings.append(skipping(path, f"{type(err).__name__}: {err}"))
    return rows, warnings, identities


def identified(record: Path) -> tuple[str, Identity]:
    """A record the parent found, with its identity (a stat each: the few records near the top)."""
    try:
        st = os.stat(record)
    except OSError:  # gone since it was listed: read_record names the problem
        return str(record), (-1, id(record))
    return str(record), (st.st_dev, st.st_ino)


def collect(done: Iterable[Found]) -> list[Row]:
    """The tasks' rows, each record once (two tasks may reach one through a link), sorted; their warnings printed
    as each task's come in."""
    rows: list[Row] = []
    seen: set[Identity] = set()
    for chunk_rows, warnings, identities in done:
        for warning in warnings:
            say(warning)
        for values, identity in zip(chunk_rows, identities, strict=True):
            if identity not in seen:
                seen.add(identity)
                rows.append(Row(*values))
    rows.sort(key=lambda r: (r.arch, r.device, r.host or "", r.world_size, r.started or ""))
    return rows


def record_paths(folders: Iterable[str | Path]) -> list[str]:
    """Every results.json under ``folders``, in order (:func:`record_entries`)."""
    return [path for path, _ in record_entries(folders)]


def record_entries(folders: Iterable[str | Path]) -> list[tuple[str, Identity]]:
    """Every results.json under ``folders``, in order, with its identity, linked folders followed, each folder
    read once and hidden ones (.hydra, .submitit) skipped. The identity costs no system call: the folder's
    device, the listing's inode (a stat where the record is itself a link).

    What cannot be followed (a dangling link, a symlink loop, a folder that cannot be read) is named on stderr in
    one warning line each, rather than passed over without a word as ``Path.rglob`` does. Paths stay strings:
    a Path object per folder costs more than reading the folder.
    """
    found: list[tuple[str, Identity]] = []
    seen: set[Identity] = set()  # (device, inode) of each folder read: a loop or a second link reads none
    stack = [str(folder) for folder in folders][::-1]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            warn_skipping(folder, err.strerror or str(err))
            continue
        subfolders = []
        for entry in entries:
            if entry.is_symlink() and (problem := link_problem(Path(entry.path), Path(folder))):
                warn_skipping(entry.path, problem)
            elif entry.is_dir() and not entry.name.startswith("."):  # .hydra, .submitit: never a record
                subfolders.append(entry.path)
            elif entry.name == RECORD_NAME:
                if entry.is_file():  # never opened otherwise: a FIFO would block, a device may act on an open
                    linked = entry.is_symlink() and entry.stat()
                    found.append((entry.path, (linked.st_dev, linked.st_ino) if linked else (st.st_dev, entry.inode())))
                else:
                    warn_skipping(entry.path, "not a regular file")
        stack.extend(reversed(subfolders))
    return found


def link_problem(link: Path, folder: Path) -> str | None:
    """Why ``link`` (in ``folder``) cannot be followed, or None when it can."""
    try:
        st = link.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symlink loop"
        return f"a dangling link to {os.readlink(link)} ({err.strerror})"
    if stat.S_ISDIR(st.st_mode) and folder.resolve().is_relative_to(target := link.resolve()):
        return f"a symlink loop (back to {target})"
    return None


def skipping(path: str | Path, why: str) -> str:
    """One warning line: the path and the reason may hold anything a file name or a record can."""
    return terminal(f"warning: skipping {path}: {why}".replace("\n", " "))


def warn_skipping(path: str | Path, why: str) -> None:
    say(skipping(path, why))


def say(line: str) -> None:
    """A line on stderr in one write: worker processes share it, and print's two writes (text, newline) could
    interleave with another process's."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
