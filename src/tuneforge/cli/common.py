"""What several commands share: the overrides help text, argument types, reading output paths."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuneforge.errors import TuneforgeError

OVERRIDES_HELP = "dotted overrides, e.g. train.lr=1e-4 method.r=16 (see `tuneforge config`)"


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def optional_path(value: str | None) -> Path | None:
    """``--out``-style options: a path when given."""
    return Path(value) if value else None


def output_folder(value: str | None, option: str = "--out") -> Path | None:
    """An ``--out`` that names a folder to write: refused now if a file already stands there."""
    if not value:
        return None
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise TuneforgeError(f"{option} {path}: a file, not a folder; choose a folder to write into (it is created)")
    return path


def split_list(text: str) -> list[str]:
    """A comma-separated option (``--methods``, ``--variants``) as its non-empty items."""
    return [item.strip() for item in text.split(",") if item.strip()]
