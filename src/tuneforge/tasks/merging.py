"""Folding adapters into a plain model, shared by every loaded run that has adapters."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from tuneforge.errors import ConfigError, RunError
from tuneforge.runs import write_meta

UNMERGEABLE = ("prefix_tuning", "prompt_tuning")  # their virtual tokens are extra inputs, not weights


def merge_adapters(model: nn.Module, meta: dict) -> nn.Module:
    """The plain transformers model with the adapters folded in (the model itself when it has none)."""
    if not meta["adapter"]:
        return model
    if meta["method"] in UNMERGEABLE:
        raise RunError(f"a {meta['method']} adapter adds virtual tokens to every input and cannot be merged into "
                       "the weights; load the run with tuneforge (or PEFT) instead")
    return model.merge_and_unload()


def require_mergeable(meta: dict, action: str) -> None:
    """Compression and export copy or rewrite the plain weights, which prefix and prompt tuning runs don't have."""
    if meta.get("adapter") and meta.get("method") in UNMERGEABLE:
        raise ConfigError(f"{action}: a {meta['method']} run keeps virtual tokens outside the weights, so it cannot "
                          "be merged, copied or exported; train the model with full, freeze, topk, lora, adalora "
                          "or ia3 first")


def save_merged(model: nn.Module, tokenizer, meta: dict, folder: Path) -> None:
    """A plain HF folder (and tuneforge.json) that transformers and tuneforge both load."""
    merge_adapters(model, meta).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    merged_meta = meta | {"adapter": False, "method": f"{meta['method']} (merged)"}
    write_meta(folder, merged_meta)
