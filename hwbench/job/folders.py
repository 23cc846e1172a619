"""A job's folder, claimed by the resolvers that Hydra's run and sweep folders name (conf/config.yaml), and kept
inside the folder it belongs in: a config value that becomes part of a path (``run_name``, and what it is made
of: ``arch.name``, ``device.name``) never leads out of it, and nothing is created before that is checked.
"""

from __future__ import annotations

import itertools
import os
import posixpath
from pathlib import Path

from hwbench.errors import ConfigError

MAX_FOLDER_NAME = 200  # characters: a file system's limit is 255 bytes, and a record's names are capped at 256


def inside(parent: str, name: str) -> Path:
    """``parent/name``, or ConfigError where ``name`` would lead out of ``parent`` or be no name at all."""
    normal = posixpath.normpath(name.replace(os.sep, "/"))
    if posixpath.isabs(normal) or normal == ".." or normal.startswith("../") or normal in (".", ""):
        raise ConfigError(
            f"run_name makes the job's folder {name!r}, which leads out of {parent}: give a run_name (and arch.name "
            f"and device.name, which it is made of) without '..', e.g. run_name=my_run"
        )
    if len(name) > MAX_FOLDER_NAME:
        raise ConfigError(f"the job's folder name is {len(name)} characters long ({name[:40]}...): give a run_name "
                          f"of fewer characters (a folder name holds at most {MAX_FOLDER_NAME} here)")  # fmt: skip
    return Path(parent) / name


def plain_name(key: str, value: str) -> None:
    """A config value that names a file inside the job's folder (hydra.job.name: its log file) is a plain name."""
    if not value or "/" in value or os.sep in value or value in (".", ".."):
        raise ConfigError(f"{key}={value!r} must be a plain file name (no '/', not '..'): e.g. {key}=hwbench")


def fresh_dir(parent: str, name: str) -> str:
    """``parent/name``, else ``name-2``, ``name-3``...: the first this process creates (``mkdir`` is atomic).

    Two jobs started in the same second resolve the same timestamped folder: each gets its own.
    """
    base = inside(parent, name)
    if shared_by_tasks():
        base.mkdir(parents=True, exist_ok=True)
        return str(base)
    for n in itertools.count(1):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir(parents=True)
        except FileExistsError:
            continue
        return str(candidate)
    raise AssertionError("unreachable")


def shared_by_tasks() -> bool:
    """SLURM started one task per GPU of a job: they all resolve the job's folder and must agree on it."""
    return int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1


def fresh_subdir(parent: str, name: str) -> str:
    """A sweep job's folder under ``parent``, as :func:`fresh_dir` claims it (Hydra wants it relative)."""
    return os.path.relpath(fresh_dir(parent, name), parent)
