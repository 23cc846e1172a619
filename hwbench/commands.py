"""The commands hwbench tells a user to type next, spelled so that they run in the shell the user has: the
closing lines, ``--help``, every hint in an error line. One rule, so that each runs as printed.

A venv that was never activated (``.venv/bin/python -m hwbench``) leaves its scripts off PATH: a bare
``hwbench-compare`` there is "command not found". Each command is named by its bare name only where PATH finds
this interpreter's own copy, else by the path of that copy, else through this interpreter (``python -m``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

# the scripts hwbench names, and the module each runs where the script cannot be found
MODULES = {"tensorboard": "tensorboard.main", "hwbench-compare": "hwbench.compare", "hwbench": "hwbench",
           "mlflow": "mlflow", "pip": "pip"}  # fmt: skip


def shell_path(path: Path, prefix: str = "") -> str:
    """``path`` as a user types it here: relative below the working folder, else absolute; after ``prefix`` (a
    URI's scheme); quoted for a shell."""
    relative = os.path.relpath(path)
    return shlex.quote(prefix + (path.as_posix() if relative.startswith("..") else Path(relative).as_posix()))


def on_path(name: str, folder: Path) -> bool:
    """PATH finds ``name`` in ``folder`` (not some other copy of it)."""
    found = shutil.which(name)
    try:
        return found is not None and os.path.samefile(Path(found).parent, folder)
    except OSError:
        return False


def python() -> str:
    """This interpreter, as the shell runs it: ``python`` where PATH finds it, else its path (a venv's bin/)."""
    interpreter = Path(sys.executable)
    return interpreter.name if on_path(interpreter.name, interpreter.parent) else shell_path(interpreter)


def command(name: str) -> str:
    """``name`` (a script installed beside this interpreter: tensorboard, hwbench-compare, pip, mlflow; or
    ``python``, or ``hwbench``: ``python -m hwbench``), as the user's shell runs it."""
    if name == "python":
        return python()
    if name == "hwbench":
        return f"{python()} -m hwbench"  # as the README runs it: no console script of that name is installed
    scripts = Path(sys.executable).parent  # a venv's bin/ (Scripts\\ on Windows), where pip put the scripts
    if on_path(name, scripts):
        return name
    script = scripts / name
    if script.is_file() and os.access(script, os.X_OK):
        return shell_path(script)
    return f"{python()} -m {MODULES[name]}"  # a --user install: its scripts are elsewhere; the module runs
