"""The Python API: ``tuneforge.train(config) -> Run`` and ``tuneforge.load(run_dir)``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneforge.config import Config, apply_overrides, config_from_dict, load_config
from tuneforge.tasks import TASKS
from tuneforge.tasks import load as load_run


def train(config: Config | dict | str | Path | None = None, overrides: list[str] | None = None,
          resume: str | Path | None = None, resume_force: bool = False, extensions: Sequence = ()) -> Any:
    """Run the task a config describes: a ``Config``, a dict, a YAML path, or None for the quickstart.

    ``resume``: "latest" (the newest run of this config), a run directory or a checkpoint folder to
    continue from exactly; ``resume_force`` continues even when the config changed what exactness needs.
    ``extensions``: training techniques (``tuneforge.extensions.Extension``) that join the run.
    Returns the finished ``tuneforge.runs.Run``.
    """
    if isinstance(config, Config):
        config = config.to_dict()
    if isinstance(config, dict):
        config = config_from_dict(apply_overrides(config, overrides or []), "config")
    else:
        config = load_config(config, overrides)
    return TASKS.get(config.task).train(config, resume=resume, resume_force=resume_force, extensions=extensions)


def load(run_dir: str | Path) -> Any:
    """A trained model from a run directory: ``predict`` for classifiers (texts or images), ``generate`` for LMs
    and Frozen runs (``caption`` too).

    A masked-LM run gives its plain transformers model (a starting point for classification, not a predictor).
    The run's files are checked first (``tuneforge.tasks.open_run``): a damaged run gets one clear message.
    """
    return load_run(run_dir)
