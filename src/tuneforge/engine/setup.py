"""Process-level set-up for a run: seeds, determinism, the Accelerator and its trackers."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

from tuneforge.config import Config, flatten
from tuneforge.errors import ConfigError


def seed_everything(config: Config) -> None:
    """Python, NumPy and torch RNGs from one seed; deterministic kernels when asked."""
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    set_seed(config.seed, deterministic=config.deterministic)


def process_state() -> PartialState:
    """This process's place among N (torchrun / accelerate launch), set up before anything else runs.

    On a machine without GPUs Accelerate only joins a multi-process run when told it is on CPU (gloo);
    plain ``torchrun`` does not tell it, so tuneforge does.
    """
    return PartialState(cpu=_cpu_only())


def _cpu_only() -> bool:
    return not torch.cuda.is_available()


def make_accelerator(config: Config, run_dir: Path | None) -> Accelerator:
    """Device placement, precision and gradient accumulation, plus the trackers the config asks for."""
    trackers = _trackers(config) if run_dir is not None else []
    accelerator = Accelerator(
        # train.batch_size is the global batch: under DDP each of N processes gets 1/N of every batch,
        # so a multi-process run sees the same examples per step as a single-process one
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        cpu=_cpu_only(),
        mixed_precision=_precision(config.train.precision),
        gradient_accumulation_steps=config.train.grad_accum,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir or "."), logging_dir=str(run_dir or ".")),
    )
    if trackers:
        flat = {k: str(v) if isinstance(v, list | tuple) else v for k, v in flatten(config.to_dict()).items()}
        accelerator.init_trackers("logs", config=flat)
    return accelerator


def apply_memory_settings(model, config: Config) -> None:
    """``train.gradient_checkpointing``: transformers' own, non-reentrant so frozen inputs (adapters) work."""
    if not config.train.gradient_checkpointing:
        return
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(f"train.gradient_checkpointing: {type(model).__name__} does not support it; set it false")
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False  # a KV cache means nothing when activations are recomputed


def _precision(setting: str) -> str:
    if setting == "fp32":
        return "no"
    if setting == "bf16":
        return "bf16"
    # auto: bf16 autocast only where it is fast; on most CPUs it is slower than fp32
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _trackers(config: Config) -> list[str]:
    wanted = [name for name, on in (("tensorboard", config.output.tensorboard), ("wandb", config.output.wandb),
                                    ("mlflow", config.output.mlflow)) if on]
    for name in wanted:
        if importlib.util.find_spec(name) is None:
            raise ConfigError(f"output.{name}: true, but {name} is not installed (pip install {name})")
    return wanted
