"""The config's keys: those a command line adds that the schema does not have, and the close ones to suggest.

The schema (hwbench.job.config) types every key; a constructor's arguments (``arch.net``, ``optim.optimizer``,
``optim.scheduler``, ``execution``) are typed ``Any`` and free: ``+optim.optimizer.weight_decay=1e-4`` passes an
argument. Anywhere else a key the schema lacks does nothing, so ``+epoch=20`` is refused, not silently kept.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterable, Iterator
from typing import Any

from hwbench.commands import command

FREE_KEYS = "arch.net, optim.optimizer, optim.scheduler and execution (a constructor's arguments)"


def show_config() -> str:
    return f"{command('hwbench')} --cfg job shows every key and its value"


def unknown_keys(config: dict[str, Any], schema: type) -> Iterator[tuple[str, list[str]]]:
    """Each key of ``config`` (a plain dict) that the ``schema`` dataclass lacks, with the keys beside it."""
    hints = typing.get_type_hints(schema)
    for key, value in config.items():
        if key not in hints:
            yield str(key), list(hints)
        elif dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            for inner, siblings in unknown_keys(value, hints[key]):
                yield f"{key}.{inner}", siblings


def close_to(key: str, keys: Iterable[str]) -> str:
    """'; did you mean epochs?' where ``key`` is close to one of ``keys``, else nothing."""
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, [str(k) for k in keys if k != "hydra"], n=1)
    return f"; did you mean {key[: len(key) - len(leaf)]}{close[0]}?" if close else ""


def unknown_key_line(key: str, siblings: Iterable[str]) -> str:
    """The one line for a key the config does not have: the close one, and where keys may be added."""
    return (
        f"{key}: no such key in the config{close_to(key, siblings)} ({show_config()}; +KEY=VALUE adds keys only "
        f"under {FREE_KEYS})"
    )
