"""Short names for what users choose: models, datasets, methods.

One small mechanism shared by every registry: register once (duplicates are a bug), look up with a
"did you mean" on a miss, list with a line of description each for `tuneforge list`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from tuneforge.errors import RegistryError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    description: str
    value: T


class Registry(Generic[T]):
    """Name -> value with a description; ``kind`` ("model", "dataset", ...) words the errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str, value: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = Entry(name, description, value)
        return value

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} '{name}'{self.suggest(name)}")
        return self._entries[name].value

    def suggest(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        if close:
            return " (did you mean " + " or ".join(f"'{c}'" for c in close) + "?)"
        return f"; known {self.kind}s: {', '.join(self._entries)} (see `tuneforge list {self.kind}s`)"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())
