"""User-facing errors: one clear message, a non-zero exit, never a traceback.

Anything raised as a ``TuneforgeError`` is a mistake the user can fix (a config typo, a missing
column, a wrong run directory). The CLI prints its message and exits with ``exit_code``; any other
exception is a bug and keeps its traceback.
"""


class TuneforgeError(Exception):
    """A problem the user can fix; ``str(error)`` says what and how."""

    exit_code = 2


class ConfigError(TuneforgeError):
    """A config file or override is wrong (unknown key, wrong type, bad value)."""


class DataError(TuneforgeError):
    """Input data is unreadable or invalid (missing column, bad rows, unknown format)."""


class RegistryError(TuneforgeError):
    """A short name (model, dataset, method) that does not exist."""


class RunError(TuneforgeError):
    """A run directory that is missing or incomplete."""
