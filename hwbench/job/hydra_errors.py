"""A bad option, key or value on the command line, as one line that names the choices or the fix.

Hydra reports these itself, in 7-12 lines, and exits 1; with ``HYDRA_FULL_ERROR`` set it raises them
instead (its documented switch), and :func:`errors_as_one_line` turns them into one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from hwbench.errors import one_line

SHOW_CONFIG = "python -m hwbench --cfg job shows every key and its value"
CLUSTER_EXTRA = "pip install -e '.[cluster]' (hydra-submitit-launcher)"


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


def command_line_error(err: Exception) -> str:
    """The fix for a bad option, key or value, named in one line."""
    cause = err.__cause__
    if isinstance(err, MissingConfigException) and "/" in (err.missing_cfg_file or ""):
        group, option = err.missing_cfg_file.rsplit("/", 1)  # type: ignore[union-attr]
        if group == "hydra/launcher" and option.startswith("submitit"):
            return f"the launchers slurm, local and submitit_local need the cluster extra: {CLUSTER_EXTRA}"
        return f"{group}={option}: no such option; {group} is one of {', '.join(err.options or [])}"
    if isinstance(err, OverrideParseException):
        return f"{err.override}: {one_line(err.message, first_only=True)}: write key=value (Hydra's override grammar)"
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):  # a key the config does not have
        key = getattr(cause, "full_key", None) or one_line(str(cause), first_only=True)
        return f"{key}: no such key in the config ({SHOW_CONFIG}; +{key}=VALUE adds a new one)"
    merging = re.match(r"Error merging override (.+)", str(err))
    if merging and isinstance(cause, OmegaConfBaseException):  # a value of the wrong type
        return f"{merging[1]}: {one_line(getattr(cause, 'msg', str(cause)), first_only=True)} ({SHOW_CONFIG})"
    return one_line(err, limit=1000)
