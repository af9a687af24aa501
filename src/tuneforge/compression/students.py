"""Transformer surgery shared by distillation and pruning: finding the block stack and keeping some blocks."""

from __future__ import annotations

import copy

from torch import nn

from tuneforge.errors import ConfigError


def layer_stack(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """The parent module, attribute name and ``ModuleList`` of the model's transformer blocks."""
    count = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count and name:
            parent_name, _, attribute = name.rpartition(".")
            return model.get_submodule(parent_name), attribute, module
    raise ConfigError(f"cannot find the {count} transformer blocks of this {type(model).__name__}")


def every_other_layer(count: int) -> list[int]:
    """DistilBERT's choice: layers 0, 2, 4... (half of them, rounded up)."""
    return list(range(0, count, 2))


def keep_layers(model: nn.Module, keep: list[int]) -> nn.Module:
    """A copy of ``model`` with only the blocks in ``keep`` (in that order), their weights included."""
    count = model.config.num_hidden_layers
    if not keep or any(not 0 <= i < count for i in keep) or len(set(keep)) != len(keep):
        raise ConfigError(f"layers to keep must be distinct indices in 0..{count - 1}, got {keep}")
    student = copy.deepcopy(model)
    parent, attribute, blocks = layer_stack(student)
    setattr(parent, attribute, nn.ModuleList([blocks[i] for i in keep]))
    for position, block in enumerate(getattr(parent, attribute)):
        for module in block.modules():  # decoders index their KV cache by layer
            if hasattr(module, "layer_idx"):
                module.layer_idx = position
    _subset_per_layer_settings(student.config, count, keep)
    student.config.num_hidden_layers = len(keep)
    return student


def _subset_per_layer_settings(config, count: int, keep: list[int]) -> None:
    """Config lists with one entry per layer (``layer_types``, a pruned model's head counts) follow the blocks."""
    for key, value in list(vars(config).items()):
        if isinstance(value, list) and len(value) == count and key not in ("id2label", "label2id"):
            setattr(config, key, [value[i] for i in keep])
