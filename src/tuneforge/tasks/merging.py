"""Folding adapters into a plain model, shared by every loaded run that has adapters."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from tuneforge.errors import ConfigError, RunError
from tuneforge.runs import write_meta

UNMERGEABLE = ("prefix_tuning", "prompt_tuning")  # their virtual tokens are extra inputs, not weights
# Bottleneck adapters are extra layers with a non-linearity, not weight deltas: nothing folds them into the
# pretrained weights. Exports that trace or quantise the whole module (ONNX, int8) keep them.
EXTRA_LAYERS = ("adapter",)


def merge_adapters(model: nn.Module, meta: dict) -> nn.Module:
    """The plain transformers model with the adapters folded in (the model itself when it has none).

    A bottleneck adapter model comes back as it is: it computes the run's outputs, for exports that trace or
    quantise it, but it is no plain transformers model (``save_merged`` refuses it).
    """
    if not meta["adapter"]:
        return model
    if meta["method"] in UNMERGEABLE:
        raise RunError(f"a {meta['method']} adapter adds virtual tokens to every input and cannot be merged into "
                       "the weights; load the run with tuneforge (or PEFT) instead")
    return model.merge_and_unload()


def require_mergeable(meta: dict, action: str, traced: bool = False) -> None:
    """Compression and export copy or rewrite the plain weights, which prefix and prompt tuning runs don't have.

    ``traced``: the action traces or quantises the whole module (ONNX, int8), which keeps bottleneck adapters.
    """
    if meta.get("method") in EXTRA_LAYERS and not traced:
        raise ConfigError(f"{action}: bottleneck adapters (method {meta['method']}) are extra layers, not changes "
                          "to the pretrained weights, so they cannot be folded into a plain transformers model or "
                          "copied into a smaller one; export the run with --format onnx (or int8, onnx-int8), which "
                          "keeps them, or train with lora or full for a mergeable model")
    if meta.get("adapter") and meta.get("method") in UNMERGEABLE:
        raise ConfigError(f"{action}: a {meta['method']} run keeps virtual tokens outside the weights, so it cannot "
                          "be merged, copied or exported; train the model with full, freeze, topk, lora, adalora "
                          "or ia3 first")


def save_merged(model: nn.Module, tokenizer, meta: dict, folder: Path) -> None:
    """A plain HF folder (and tuneforge.json) that transformers and tuneforge both load."""
    require_mergeable(meta, "--format merged")  # never a folder that silently lacks bottleneck adapters
    merge_adapters(model, meta).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    merged_meta = meta | {"adapter": False, "method": f"{meta['method']} (merged)"}
    write_meta(folder, merged_meta)
