"""hwbench uses Lightning, TensorBoard and Hydra through their public APIs: a private name (``_name``) of theirs is
used only in the adapter modules listed here, each saying why, so that a library upgrade breaks in one known place.
Read from the source itself (ast): an import of a private module or name, a private attribute of anything that is
not hwbench's own, or a private module's dotted path in a string."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "hwbench"
LIBRARIES = ("lightning", "tensorboard", "hydra")
# where a private name of theirs is the only way; each with its reason and its own test of the library's behaviour
ADAPTERS = {
    "loggers/mlflow_run.py": "Lightning's MLFlowLogger makes a missing experiment with a warning and has no public "
    "hook to find or make it quietly: its client and names are read here (tests/test_loggers.py fails if they change)",
}
# private attributes that are not these libraries': the standard library's, torch's (outside this rule)
OTHERS = {"_exit", "_replace", "_asdict", "_fields", "_orig_mod", "_conv_forward", "_target_"}
PRIVATE_PATH = re.compile(rf"\b({'|'.join(LIBRARIES)})(\.\w+)*\._\w+")


def own_private_names() -> set[str]:
    """Every private name hwbench defines (functions, classes, attributes, variables): these are its own."""
    names = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return {n for n in names if n.startswith("_")}


def private_uses(source: str, name: str, own: set[str]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(LIBRARIES):
            private = [p for p in node.module.split(".") if p.startswith("_")]  # type: ignore[union-attr]
            private += [a.name for a in node.names if a.name.startswith("_")]
            found += [f"{where}: from {node.module} import ... ({', '.join(private)})"] if private else []
        elif isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names
                      if a.name.startswith(LIBRARIES) and "._" in a.name]  # fmt: skip
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if node.attr not in own and node.attr not in OTHERS and root_name(node) != "torch":
                found.append(f"{where}: .{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and PRIVATE_PATH.search(node.value):
            found.append(f"{where}: {PRIVATE_PATH.search(node.value)[0]!r}")  # type: ignore[index]
    return found


def root_name(node: ast.Attribute) -> str | None:
    """``torch`` for ``torch.ops.mkldnn._x``: whose attribute it is, where a name starts the chain."""
    value: ast.AST = node
    while isinstance(value, ast.Attribute):
        value = value.value
    return value.id if isinstance(value, ast.Name) else None


def test_no_private_name_of_lightning_tensorboard_or_hydra_outside_the_adapters() -> None:
    own = own_private_names()
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        if (name := str(path.relative_to(SOURCE))) not in ADAPTERS:
            found += private_uses(path.read_text(encoding="utf-8"), name, own)
    assert found == [], "private names outside the adapter modules:\n" + "\n".join(found)


@pytest.mark.parametrize("source", ["launcher._launch_process_observer = f", "w._get_file_writer()",
                                    "from hydra._internal.utils import x", "T = 'hydra._internal.core.X'"])  # fmt: skip
def test_the_check_finds_each_kind_of_private_use(source: str) -> None:
    assert private_uses(source, "probe.py", own_private_names() - {"_launch_process_observer", "_get_file_writer"})
