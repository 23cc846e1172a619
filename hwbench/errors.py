"""Errors a user can fix: reported as one line that names the fix, never as a traceback."""


class HwbenchError(Exception):
    """A problem with the user's input or machine, with a message that says how to fix it."""


class ConfigError(HwbenchError):
    """A config value is out of range or of the wrong kind."""


class DataError(HwbenchError):
    """MNIST is missing, corrupt, or could not be fetched."""


class DeviceUnavailable(HwbenchError):
    """The requested accelerator is not on this machine; a sweep records the job as skipped."""
