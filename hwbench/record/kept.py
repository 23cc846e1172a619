"""What a job measures once per machine and setting and later jobs read back: the matmul peak, the CPU kernel choice.

Each fact is a small JSON file under ``$HWBENCH_CACHE`` (else the XDG cache folder's hwbench/), named by what it
is and a digest of what it depends on; a lock makes jobs that start together wait for one measurement. A kept
file is untrusted input like any other: read strictly, for its own key only, else measured again. Delete the
folder to measure everything again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)
LOCK_SECONDS = 300  # longest wait for another job's measurement before measuring anyway
Key = Mapping[str, object]
P = TypeVar("P", bound=BaseModel)


def cache_dir() -> Path:
    """``$HWBENCH_CACHE``, else the XDG cache folder's hwbench/ (by hand: one folder is not worth a dependency)."""
    if folder := os.environ.get("HWBENCH_CACHE"):
        return Path(folder)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hwbench"


def kept_file(what: str, key: Key) -> Path:
    """Where the fact ``what`` (``matmul-peak``, ``cpu-kernels``) for ``key`` is kept."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache_dir() / f"{what}-{digest}.json"


def read_kept(path: Path, key: Key, kind: type[P]) -> P | None:
    """The ``kind`` kept at ``path`` for ``key``; None where there is none, or it is unreadable or another key's."""
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        if kept.get("key") != json.loads(json.dumps(key, default=str)):
            return None
        return kind.model_validate(kept["value"], strict=True)  # strict: "1e39" is no number
    except (OSError, ValueError, KeyError, AttributeError, TypeError, ValidationError):
        return None


def keep(path: Path, key: Key, value: BaseModel) -> None:
    """Write ``value`` whole or not at all (a temporary file renamed over the old one); a cache that cannot be
    written costs the next job a measurement, never this job its record."""
    try:
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
            json.dump({"key": key, "value": value.model_dump(mode="json")}, f, indent=1, default=str)
        os.replace(f.name, path)
    except OSError as err:
        log.warning("%s is not kept (%s): the next job measures it again", path.name, err)


def forget(path: Path, why: str) -> None:
    """Delete a kept fact, if there is one (the next job measures again), saying why."""
    try:
        path.unlink()
    except FileNotFoundError:  # never kept (a busy machine's), or deleted already
        return
    except OSError as err:
        log.warning("%s could not be deleted (%s): delete it by hand", path, err)
        return
    log.warning("%s: %s is deleted; the next job measures again", why, path.name)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[bool]:
    """Hold ``path``'s lock (True), or go on without it (False, said in one line) where there is no cache folder or
    another job's measurement hangs."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{path}.lock", timeout=LOCK_SECONDS)
        lock.acquire()
    except (OSError, Timeout) as err:
        log.warning("no cache for %s (%s): measuring without it", path.name, err)
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
