"""One results record per job: a JSON file in the job's output folder, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
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


def find_records(*folders: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every results record under ``folders`` (recursively), oldest first."""
    paths = sorted({p for folder in folders for p in Path(folder).rglob(RECORD_NAME)})
    records = [(p, json.loads(p.read_text())) for p in paths]
    return sorted(records, key=lambda pr: pr[1].get("started", ""))
