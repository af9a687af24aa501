"""The Python API: ``tuneforge.train(config) -> Run`` and ``tuneforge.load(run_dir)``."""

from __future__ import annotations

import json
from pathlib import Path

from tuneforge.config import Config, apply_overrides, config_from_dict, load_config
from tuneforge.runs import Run, open_run


def train(config: Config | dict | str | Path | None = None, overrides: list[str] | None = None,
          resume: str | Path | None = None, resume_force: bool = False) -> Run:
    """Run the task a config describes: a ``Config``, a dict, a YAML path, or None for the quickstart.

    ``resume``: "latest" (the newest run of this config), a run directory or a checkpoint folder to
    continue from exactly; ``resume_force`` continues even when the config changed what exactness needs.
    """
    if isinstance(config, Config):
        config = config.to_dict()
    if isinstance(config, dict):
        config = config_from_dict(apply_overrides(config, overrides or []), "config")
    else:
        config = load_config(config, overrides)
    from tuneforge.tasks import recipe_for

    return recipe_for(config.task)(config, resume=resume, resume_force=resume_force)


def load(run_dir: str | Path):
    """A trained model from a run directory, ready to ``predict``."""
    meta = json.loads((open_run(run_dir) / "tuneforge.json").read_text(encoding="utf-8"))
    if meta["task"] == "text_classification":
        from tuneforge.tasks.text_classifier import TextClassifier

        return TextClassifier.from_run(run_dir)
    raise NotImplementedError(f"loading task '{meta['task']}' is not supported yet")
