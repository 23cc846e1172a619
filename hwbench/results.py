"""One results record per job: a JSON file in the job's output folder, written atomically."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RECORD_NAME = "results.json"


def write_record(folder: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` so that a reader never sees half a file, even if the job dies mid-write."""
    path = Path(folder) / RECORD_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def find_records(folders: Iterable[str | Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Every readable record under ``folders`` (recursively), oldest first.

    A malformed one is named on stderr and skipped: one truncated copy from another machine should not
    hide every other result.
    """
    records = []
    for path in sorted({p for folder in folders for p in Path(folder).rglob(RECORD_NAME)}):
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            print(f"warning: skipping {path}: not a readable results record ({err})", file=sys.stderr)
            continue
        if not isinstance(record, dict) or "status" not in record:
            print(f"warning: skipping {path}: not a results record (no status)", file=sys.stderr)
            continue
        records.append((path, record))
    return sorted(records, key=lambda pr: str(pr[1].get("started", "")))
