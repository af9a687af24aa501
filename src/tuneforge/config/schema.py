"""The whole run config: top-level keys plus one field per section, each section checking its own values.

A new section is one dataclass with a ``check(source)`` method (in a module of this package) and one field here
whose default is ``None``; loading, defaults, range checks and the docs pick it up from the field's type.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from tuneforge.config.distill import DistillConfig
from tuneforge.config.fields import setting
from tuneforge.config.methods import DEFAULT_METHOD, METHOD_CONFIGS, MethodConfig
from tuneforge.config.serve import ServeConfig
from tuneforge.config.tasks import FrozenConfig, ImageConfig, LMConfig, NERConfig, PromptConfig, SFTConfig
from tuneforge.config.training import DataConfig, EvalConfig, ModelConfig, OutputConfig, TrainConfig


@dataclass
class Config:
    # A plain name, checked against the task registry when a run starts (config sits below the tasks, and a new
    # task registers itself there alone).
    task: str = setting("text_classification", "What to train: a task name (`tuneforge list tasks`).")
    name: str = setting("quickstart", "Run name, the prefix of the run directory.")
    seed: int = setting(42, "One seed for splits, initialisation, dropout and batch order.")
    deterministic: bool = setting(False, "Force deterministic kernels (bit-exact CPU repeats, slower).")
    data: DataConfig = setting(None, "Where the examples come from and how they are read.")
    model: ModelConfig = setting(None, "The pretrained model to start from.")
    method: MethodConfig = setting(None, "How the model is adapted (`tuneforge list methods`).")
    train: TrainConfig = setting(None, "Optimisation.")
    eval: EvalConfig = setting(None, "Validation during training.")
    lm: LMConfig = setting(None, "Language modelling (causal_lm, masked_lm, sft).")
    sft: SFTConfig = setting(None, "Instruction tuning: which columns hold the conversation.")
    prompt: PromptConfig = setting(None, "Prompt-based zero/few-shot classification.")
    ner: NERConfig = setting(None, "Token classification (named entities): CRF, rule patterns, windows.")
    image: ImageConfig = setting(None, "Image input: size, augmentation, normalisation (image_classification).")
    frozen: FrozenConfig = setting(None, "Frozen: visual prefixes for a frozen language model (task: frozen).")
    output: OutputConfig = setting(None, "Where results go and which loggers run.")
    serve: ServeConfig = setting(None, "The HTTP server (`tuneforge serve`): security, limits, batching, queueing.")
    distill: DistillConfig = setting(None, "Knowledge distillation (`tuneforge distill TEACHER_RUN CONFIG`).")

    def __post_init__(self) -> None:
        # Sections default to their own defaults; dataclasses can't express that directly.
        for name, section in SECTION_TYPES.items():
            if getattr(self, name) is None:
                setattr(self, name, section())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self, source: str) -> None:
        """Refuse values of the right type that still cannot work: caught here, not as a traceback mid-run.

        Each section checks its own keys. A check that needs two sections would go here, after the loop
        (there is none today: every limit lies within one section).

        Raises:
            ConfigError: for the first problem found, naming ``source``, the key and what it must be.
        """
        for name in CHECK_ORDER:
            getattr(self, name).check(source)


def _section_types() -> dict[str, type]:
    """Section name -> the class built when the config lacks it, read from the annotations of ``Config``."""
    hints = typing.get_type_hints(Config)
    sections = {}
    for f in dataclasses.fields(Config):
        if f.name == "method":  # a union of method configs: the default method stands for it
            sections[f.name] = METHOD_CONFIGS[DEFAULT_METHOD]
        elif dataclasses.is_dataclass(hints[f.name]):
            sections[f.name] = hints[f.name]
    return sections


SECTION_TYPES: dict[str, type] = _section_types()

# The first problem found is the one reported. These sections are checked first, in the order the single check
# function used before sections checked themselves, so a config with several problems still gets the same message;
# any other section follows in field order.
_CHECKED_FIRST = ("train", "data", "eval", "lm", "prompt", "image", "frozen", "distill", "serve", "method")
CHECK_ORDER: tuple[str, ...] = _CHECKED_FIRST + tuple(name for name in SECTION_TYPES if name not in _CHECKED_FIRST)
