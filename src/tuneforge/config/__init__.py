"""Typed run configuration: YAML in, checked dataclasses out.

Every field carries its help text in ``metadata["help"]``; ``tuneforge config`` prints them and
docs/configuration.md is generated from them. Loading is strict: an unknown key is an error with a
"did you mean", a wrong type names the expected type, and CLI overrides (``train.lr=1e-4``) go
through the same checks. The defaults are the quickstart run (LoRA on ``minilm-l6`` over
``rt-sentences``), so ``Config()`` is a complete, runnable config.

Layout: ``fields`` (the field and check helpers every section uses), one module per group of sections
(``training``, ``tasks``, ``serve``, ``distill``, ``methods``), ``schema`` (``Config``, which runs each
section's ``check``), ``loading`` (YAML, overrides, type checks) and ``docs`` (the generated reference).
"""

from tuneforge.config.distill import DistillConfig
from tuneforge.config.docs import config_markdown, describe_fields
from tuneforge.config.loading import apply_overrides, config_from_dict, flatten, load_config, save_config
from tuneforge.config.methods import (
    METHOD_CONFIGS,
    AdaLoraConfig,
    AdapterConfig,
    FreezeConfig,
    FullConfig,
    IA3Config,
    LoraConfig,
    MethodConfig,
    PrefixTuningConfig,
    PromptTuningConfig,
    TopKConfig,
)
from tuneforge.config.schema import Config
from tuneforge.config.serve import ServeConfig
from tuneforge.config.tasks import FrozenConfig, ImageConfig, LMConfig, PromptConfig, SFTConfig
from tuneforge.config.training import (
    AdversarialConfig,
    AugmentConfig,
    CheckpointConfig,
    DataConfig,
    EvalConfig,
    ModelConfig,
    OutputConfig,
    TrainConfig,
)

__all__ = [
    "METHOD_CONFIGS",
    "AdaLoraConfig",
    "AdapterConfig",
    "AdversarialConfig",
    "AugmentConfig",
    "CheckpointConfig",
    "Config",
    "DataConfig",
    "DistillConfig",
    "EvalConfig",
    "FreezeConfig",
    "FrozenConfig",
    "FullConfig",
    "IA3Config",
    "ImageConfig",
    "LMConfig",
    "LoraConfig",
    "MethodConfig",
    "ModelConfig",
    "OutputConfig",
    "PrefixTuningConfig",
    "PromptConfig",
    "PromptTuningConfig",
    "SFTConfig",
    "ServeConfig",
    "TopKConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_markdown",
    "describe_fields",
    "flatten",
    "load_config",
    "save_config",
]
