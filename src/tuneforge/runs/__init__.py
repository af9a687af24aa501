"""Run directories: ``runs/<name>-<timestamp>/`` with config, metrics, report, plots and the model.

A run directory is the unit users pass around: ``tuneforge predict RUN``, ``eval RUN``, ``export RUN``.
``directories`` creates and resumes them, ``finish`` writes what every finished run holds, and ``reader``
opens one again with its files checked. Only the reader is imported eagerly: it needs no torch, so the
CLI and the task registry stay fast to start.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from tuneforge.runs.reader import META_FILE, RunFolder, read_meta, read_run, write_meta

_LAZY = {
    "Run": "directories", "check_writable": "directories", "create_run_dir": "directories",
    "find_resume_point": "directories", "run_dir_for": "directories", "finish_run": "finish",
    "RunReport": "finish", "write_run": "finish",
}


def open_run(path: str | Path) -> Path:
    """The checked model folder of a run directory (or of a model folder given directly)."""
    return read_run(path).model_dir


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"tuneforge.runs.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tuneforge.runs' has no attribute {name!r}")


__all__ = ["META_FILE", "RunFolder", "open_run", "read_meta", "read_run", "write_meta", *_LAZY]
