"""Errors a user can fix: reported as one line that names the fix, never as a traceback."""


class HwbenchError(Exception):
    """A problem with the user's input or machine, with a message that says how to fix it."""


class ConfigError(HwbenchError):
    """A config value is out of range or of the wrong kind."""


def one_of(key: str, value: object, choices: tuple) -> None:
    """Raise ``ConfigError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}")


class DataError(HwbenchError):
    """MNIST is missing, corrupt, or could not be fetched."""


class DeviceUnavailable(HwbenchError):
    """The requested accelerator is not on this machine; a sweep records the job as skipped."""


class MachineBusy(HwbenchError):
    """Other load on the machine, where device.require_quiet=true asks for none: nothing is timed on it."""


class OutputFolderTaken(HwbenchError):
    """The job's folder already holds another run's results: writing there would mix or lose them."""


class OutputUnwritable(HwbenchError):
    """A job's outputs could not be written (a full disk, a quota, a read-only or vanished folder): a sweep
    stops there, since every later job would write to the same place."""

    def __init__(self, folder: object, words: str, full: bool) -> None:
        self.folder = folder
        fix = (
            "free some space there or set output_root to another disk"
            if full
            else "set output_root to a folder you can write"
        )
        super().__init__(f"cannot write {folder} ({words}): {fix}")


class Interrupted(BaseException):
    """A signal (SIGINT, SIGTERM, SIGUSR1) asked the run to stop; the exit status is 128 + its number."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")


def one_line(what: BaseException | str, limit: int = 300, first_only: bool = False) -> str:
    """An error's message (or a text) on one line: its lines joined (a multi-line message's first line often ends
    in a colon: the reason follows), or only the first with ``first_only``; cut at ``limit`` characters; the
    error's type when it has no message."""
    lines = [line.strip() for line in str(what).splitlines() if line.strip()]
    text = " ".join(lines[:1] if first_only else lines)
    if not text and isinstance(what, BaseException):
        text = type(what).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
