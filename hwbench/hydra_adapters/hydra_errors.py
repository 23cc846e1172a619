"""A bad option, key or value on the command line, as one line that names the choices or the fix.

Hydra reports these itself, in 7-12 lines, and exits 1; with ``HYDRA_FULL_ERROR`` set it raises them
instead (its documented switch), and :func:`errors_as_one_line` turns them into one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from hwbench.commands import command
from hwbench.errors import HwbenchError, one_line
from hwbench.job.keys import show_config, unknown_key_line

KEY = re.compile(r"[+~]{0,2}[\w.@/-]+")  # a key as Hydra's grammar reads it, with its + ++ ~ prefix
CLUSTER_EXTRA = "install -e '.[cluster]' (hydra-submitit-launcher)"  # after pip, as this shell runs it


@contextlib.contextmanager
def errors_as_one_line() -> Iterator[None]:
    """Around Hydra's app: its errors about the command line end in one line and exit 1. Whoever set
    HYDRA_FULL_ERROR themselves gets Hydra's full trace, as Hydra promises."""
    if os.environ.get("HYDRA_FULL_ERROR"):
        yield
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # children of this job (DDP ranks) inherit it: they raise, not print
    try:
        yield
    except (HydraException, OmegaConfBaseException) as err:
        sys.exit(f"error: {command_line_error(err)}")
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


def hwbench_error(err: BaseException) -> HwbenchError | None:
    """The error of hwbench's own under what Hydra and OmegaConf wrapped it in (a resolver's, a callback's)."""
    seen: BaseException | None = err
    while seen is not None and not isinstance(seen, HwbenchError):
        seen = seen.__cause__ or seen.__context__
    return seen


def command_line_error(err: Exception) -> str:
    """The fix for a bad option, key or value, named in one line."""
    if own := hwbench_error(err):  # a folder name that would leave output_root (hwbench.job.folders)
        return str(own)
    cause = err.__cause__
    if isinstance(err, MissingConfigException) and "/" in (err.missing_cfg_file or ""):
        group, option = err.missing_cfg_file.rsplit("/", 1)  # type: ignore[union-attr]
        if group == "hydra/launcher" and option.startswith("submitit"):
            extra = f"{command('pip')} {CLUSTER_EXTRA}"
            return f"the launchers slurm, local and submitit_local need the cluster extra: {extra}"
        options = err.options or group_options(group)  # Hydra names none for an option of a list (logger=[a,b])
        return f"{group}={option}: no such option; {group} is one of {', '.join(options)}"
    if isinstance(err, OverrideParseException):
        return unparsed_line(err.override, one_line(err.message, first_only=True))
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):  # a key the config does not have
        key = getattr(cause, "full_key", None) or one_line(str(cause), first_only=True)
        parent = getattr(cause, "parent_node", None)
        return unknown_key_line(key, list(parent.keys()) if parent is not None else [])
    if isinstance(err, ConfigCompositionException) and isinstance(cause, OmegaConfBaseException) and cause.full_key:
        value = cause.value if isinstance(cause.value, str) else json.dumps(cause.value, default=str)
        reason = one_line(cause.msg or str(cause), first_only=True)
        return f"{cause.full_key}={value}: {reason} ({show_config()})"  # a value of the wrong type for its key
    return one_line(err, limit=1000)


def group_options(group: str) -> list[str]:
    """A config group's options, from its folder (hwbench's own groups: conf/<group>/*.yaml)."""
    from hwbench.job.config import config_dir

    return sorted(path.stem for path in (Path(config_dir()) / group).glob("*.yaml"))


def unparsed_line(override: str, reason: str) -> str:
    """An override Hydra's lexer cannot read. Its grammar takes few characters unquoted (no letters beyond ASCII,
    no quotes or brackets): where the key is good, the fix is Hydra's own quoting, spelled out for the shell."""
    key, equals, value = override.partition("=")
    if not equals or not value or not KEY.fullmatch(key):
        return f"{override}: {reason}: write key=value (Hydra's override grammar)"
    quoted = value.replace("'", "\\'")  # in Hydra's quotes, \' is a quote
    argument = f"{key}='{quoted}'"
    shell = f'"{argument}"' if not set(argument) & set('"$`\\!') else shlex.quote(argument)
    return f"{override}: Hydra's override grammar reads this value only in quotes: write {shell}"
