"""What several commands share: the overrides help text, argument types, reading output paths."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def split_list(text: str) -> list[str]:
    """A comma-separated option (``--methods``, ``--variants``) as its non-empty items."""
    return [item.strip() for item in text.split(",") if item.strip()]
