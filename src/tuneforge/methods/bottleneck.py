"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021): ``method.name: adapter``.

A small feed-forward block (down-projection -> non-linearity -> up-projection, with its own residual) follows
the output projection of a transformer layer's attention and/or feed-forward block, before that block's
residual and LayerNorm. Houlsby places one after both, Pfeiffer after the feed-forward output only. The
up-projection starts at zero, so the adapted model starts as the pretrained one.

tuneforge has its own small module because the ``adapters`` library pins transformers 4.x and PEFT has no
bottleneck adapters. ``BottleneckModel`` wraps the adapted model the way PEFT's ``PeftModel`` does
(``base_model``, forward by keywords, ``config``, ``device``), so the recipes save it with the same
``model.save_pretrained(folder)``: only the adapters and the new head, in ``bottleneck_adapters.safetensors``,
beside ``bottleneck_config.json`` (what ``insert_adapters`` needs to rebuild the same layers).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tuneforge.errors import ConfigError, RunError
from tuneforge.methods import transformer_layers

ADAPTER_WEIGHTS = "bottleneck_adapters.safetensors"
ADAPTER_SETTINGS = "bottleneck_config.json"
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}

# (attention output projection, feed-forward output projection), as named inside one transformer layer.
# Exact names: BERT's feed-forward output is ``output.dense``, a suffix of its attention's ``attention.output.dense``.
FAMILIES = (
    ("attention.output.dense", "output.dense"),  # BERT, MiniLM, RoBERTa, ELECTRA, XLM-R
    ("self_attn.o_proj", "mlp.down_proj"),  # Llama, SmolLM2, Gemma 3, Qwen, Mistral
    ("attention.out_lin", "ffn.lin2"),  # DistilBERT
)


class Bottleneck(nn.Module):
    """``x + up(activation(down(x)))``; ``up`` starts at zero, so a new adapter is the identity."""

    def __init__(self, width: int, size: int, non_linearity: str) -> None:
        super().__init__()
        self.down = nn.Linear(width, size)
        self.activation = ACTIVATIONS[non_linearity]()
        self.up = nn.Linear(size, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.activation(self.down(hidden)))


class AdaptedLinear(nn.Module):
    """An output projection followed by its adapter: ``adapter(linear(x))``, in place of the ``nn.Linear``.

    A module of its own (not a forward hook), so int8 quantisation swaps the Linear layers inside it and keeps
    the adapter in the graph.
    """

    def __init__(self, base_layer: nn.Linear, adapter: Bottleneck) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter = adapter

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.base_layer(hidden))


# --------------------------------------------------------------------------- where adapters go


def layer_stack(model: nn.Module) -> nn.ModuleList:
    """The model's transformer blocks, found as every method finds them (``methods.transformer_layers``)."""
    try:
        return transformer_layers(model)[1]
    except ValueError:
        raise ConfigError(f"method 'adapter': {type(model).__name__} has no stack of transformer layers to adapt") \
            from None


def choose_targets(model: nn.Module, placement: str, chosen: list[str] | None) -> list[str]:
    """Module names inside each layer that get an adapter after them: ``chosen``, else the family's placement.

    Raises:
        ConfigError: an unknown family (or a chosen name that is not a Linear), naming the layer's Linear modules.
    """
    layers = layer_stack(model)
    linear = {name for name, m in layers[0].named_modules() if isinstance(m, nn.Linear | AdaptedLinear)}
    if chosen:
        missing = [name for name in chosen if name not in linear]
        if missing:
            raise ConfigError(f"method.target_modules: {', '.join(missing)} not among the linear modules of this "
                              f"model's layers: {', '.join(sorted(linear))}")
        return list(chosen)
    for attention, feed_forward in FAMILIES:
        if attention in linear and feed_forward in linear:
            return [attention, feed_forward] if placement == "houlsby" else [feed_forward]
    kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    raise ConfigError(f"method 'adapter': no known adapter placement for a {kind} model; set method.target_modules "
                      f"to the output projections among its layers' linear modules: {', '.join(sorted(linear))}")


def insert_adapters(model: nn.Module, targets: list[str], reduction_factor: int, non_linearity: str) -> None:
    """Replace each target Linear of every layer by an ``AdaptedLinear`` (bottleneck = width / reduction_factor)."""
    layers = layer_stack(model)
    for layer in layers:
        for name in targets:
            linear = layer.get_submodule(name)
            width = linear.out_features
            size = max(1, width // reduction_factor)
            adapter = Bottleneck(width, size, non_linearity).to(linear.weight.device, linear.weight.dtype)
            parent, _, attribute = name.rpartition(".")
            setattr(layer.get_submodule(parent) if parent else layer, attribute, AdaptedLinear(linear, adapter))


# --------------------------------------------------------------------------- the wrapped model


class BottleneckModel(nn.Module):
    """A model with bottleneck adapters inserted, saved as only what trains (adapters and head).

    Attributes the wrapper lacks are looked up on ``base_model`` (as PEFT's ``PeftModel`` does), so code
    written for the transformers model (``config``, ``set_attn_implementation``...) keeps working.
    """

    def __init__(self, base_model: nn.Module, settings: dict) -> None:
        super().__init__()
        self.base_model = base_model
        self.settings = dict(settings)

    def forward(self, *args, **kwargs):
        return self.base_model(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":  # not set yet (inside __init__): no recursion
                raise
            return getattr(self.base_model, name)

    @property
    def config(self):
        return self.base_model.config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def get_input_embeddings(self) -> nn.Module:
        return self.base_model.get_input_embeddings()

    def saved_names(self) -> list[str]:
        """Names (in ``base_model``) of the tensors a save holds: every adapter's and the head's."""
        heads = tuple(f"{head}." for head in self.settings["heads"])
        return [name for name, _ in self.base_model.named_parameters()
                if ".adapter." in name or (heads and name.startswith(heads))]

    def save_pretrained(self, folder: str | Path, **_) -> None:
        """``bottleneck_adapters.safetensors`` (adapters and head) and ``bottleneck_config.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = self.base_model.state_dict()
        save_file({name: state[name].detach().contiguous() for name in self.saved_names()}, folder / ADAPTER_WEIGHTS)
        self.save_settings(folder)

    def save_settings(self, folder: Path) -> None:
        (Path(folder) / ADAPTER_SETTINGS).write_text(json.dumps(self.settings, indent=2), encoding="utf-8")

    def load_adapters(self, path: Path) -> None:
        """The saved adapters and head, strictly: a missing or unexpected tensor is a damaged or foreign file."""
        tensors = load_file(path)
        expected = set(self.saved_names())
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        if missing or extra:
            raise RunError(f"{path}: does not fit the adapters of {ADAPTER_SETTINGS} (missing {missing[:3]}, "
                           f"unexpected {extra[:3]}); the folder is damaged or mixed: train the run again")
        self.base_model.load_state_dict(tensors, strict=False)


def apply_adapters(model: nn.Module, method, heads: tuple[str, ...]) -> BottleneckModel:
    """Insert adapters as ``method`` says, freeze everything but them and the heads; returns the wrapper."""
    targets = choose_targets(model, method.placement, method.target_modules)
    insert_adapters(model, targets, method.reduction_factor, method.non_linearity)
    settings = {"placement": method.placement, "reduction_factor": method.reduction_factor,
                "non_linearity": method.non_linearity, "target_modules": targets, "heads": list(heads),
                "base_model": getattr(getattr(model, "config", None), "name_or_path", None)}
    wrapped = BottleneckModel(model, settings)
    saved = set(wrapped.saved_names())
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name in saved
    return wrapped


def read_settings(folder: Path) -> dict | None:
    """A folder's ``bottleneck_config.json``, or None when it holds no bottleneck adapters."""
    path = Path(folder) / ADAPTER_SETTINGS
    if not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
        keys = ("target_modules", "reduction_factor", "non_linearity", "heads")
        if not isinstance(settings, dict) or any(key not in settings for key in keys):
            raise ValueError(f"it lacks one of {', '.join(keys)}")
    except (UnicodeDecodeError, ValueError) as error:
        raise RunError(f"{path}: damaged adapter settings ({error}); train the run again") from None
    if settings["non_linearity"] not in ACTIVATIONS:
        raise RunError(f"{path}: unknown non_linearity {settings['non_linearity']!r} (written by a newer tuneforge?)")
    return settings


def restore_adapters(base: nn.Module, folder: Path, settings: dict) -> BottleneckModel:
    """``base`` (the pretrained model with a fresh head) with the adapters and head saved in ``folder``."""
    try:
        insert_adapters(base, settings["target_modules"], settings["reduction_factor"], settings["non_linearity"])
    except (AttributeError, ConfigError) as error:  # settings written for another architecture
        raise RunError(f"{Path(folder) / ADAPTER_SETTINGS}: its target_modules do not fit the base model ({error}); "
                       "was the base model replaced?") from None
    model = BottleneckModel(base, settings)
    weights = Path(folder) / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise RunError(f"{folder}: a bottleneck adapter run without {ADAPTER_WEIGHTS}; train the run again")
    model.load_adapters(weights)
    return model


def is_bottleneck(model: nn.Module) -> bool:
    return isinstance(model, BottleneckModel)
