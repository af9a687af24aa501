"""The Python API: ``tuneforge.train(config) -> Run`` and ``tuneforge.load(run_dir)``."""

from __future__ import annotations

import json
from pathlib import Path

from tuneforge.config import Config, apply_overrides, config_from_dict, load_config
from tuneforge.errors import RunError
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
    """A trained model from a run directory: ``predict`` for classifiers (texts or images), ``generate`` for LMs
    and Frozen runs (``caption`` too).

    A masked-LM run gives its plain transformers model (a starting point for classification, not a predictor).
    """
    meta = json.loads((open_run(run_dir) / "tuneforge.json").read_text(encoding="utf-8"))
    task = meta["task"]
    if task == "text_classification":
        from tuneforge.tasks.text_classifier import TextClassifier

        return TextClassifier.from_run(run_dir)
    if task in ("causal_lm", "sft"):
        from tuneforge.tasks.generator import LanguageModel

        return LanguageModel.from_run(run_dir)
    if task == "prompt_classification":
        from tuneforge.tasks.prompt_classification import PromptClassifier

        return PromptClassifier.from_run(run_dir)
    if task == "image_classification":
        from tuneforge.tasks.image_classifier import ImageClassifierModel

        return ImageClassifierModel.from_run(run_dir)
    if task == "frozen":
        from tuneforge.tasks.frozen_model import FrozenModel

        return FrozenModel.from_run(run_dir)
    if task == "masked_lm":
        from tuneforge.tasks.language_model import load_masked_lm

        return load_masked_lm(run_dir)
    raise RunError(f"{run_dir}: unknown task '{task}' in tuneforge.json")
