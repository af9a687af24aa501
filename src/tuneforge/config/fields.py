"""What every config section is made of: fields that carry their help text, and range checks that name the key."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from tuneforge.errors import ConfigError

# One range check: (key path, value, whether the value works, what it must be). Written as a table per section, so
# the key and the message a user sees sit on the same line as the condition.
Check = tuple[str, Any, bool, str]


def setting(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field whose help text is in ``metadata["help"]`` (for ``tuneforge config`` and the docs).

    Args:
        default: The default value; lists, dicts and dataclasses are deep-copied for every instance.
        help: One or two sentences on what the key does, shown to users.
        **kwargs: Passed on to ``dataclasses.field``.
    """
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def require(source: str, checks: list[Check]) -> None:
    """Raise for the first check that fails, naming the file, the key, what it must be and what it is.

    Raises:
        ConfigError: ``"<source>: <key> must be <expected>, got <value>"``.
    """
    for key, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{source}: {key} must be {expected}, got {value!r}")
