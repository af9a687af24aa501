"""Fine-tuning methods: which parameters train, chosen by ``method.name``.

Every method is a function ``(model, method_config) -> model`` registered under its short name. The
new task head (what a pretrained checkpoint did not have) always trains: a frozen random head
would be useless, and for LoRA it is saved beside the adapter so a reloaded model predicts exactly
as it did before saving.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from tuneforge.config import FreezeConfig, LoraConfig, TopKConfig
from tuneforge.errors import ConfigError
from tuneforge.registry import Registry

MethodFn = Callable[[nn.Module, object], nn.Module]
METHODS: Registry[MethodFn] = Registry("method")


def apply_method(model: nn.Module, method) -> nn.Module:
    """Mark the parameters that train under ``method`` (wrapping the model for PEFT methods)."""
    return METHODS.get(method.name)(model, method)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; for adapters the total includes the adapter."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def describe_trainable(trainable: int, total: int) -> str:
    """'770 of 22,713,986 (0.0034%)': enough digits that a linear probe doesn't read as 0.00%."""
    share = 100 * trainable / total
    return f"{trainable:,} of {total:,} ({share:.1f}%)" if share >= 1 else f"{trainable:,} of {total:,} ({share:.2g}%)"


def head_module_names(model: nn.Module) -> list[str]:
    """Top-level modules outside the pretrained backbone (``classifier``, ``score``...): the new head."""
    base = getattr(model, "base_model", model)
    return [
        name
        for name, child in model.named_children()
        if child is not base and any(True for _ in child.parameters())
    ]


def _set_trainable(model: nn.Module, predicate: Callable[[str], bool]) -> nn.Module:
    for name, parameter in model.named_parameters():
        parameter.requires_grad = predicate(name)
    return model


def _in_head(model: nn.Module) -> Callable[[str], bool]:
    heads = tuple(f"{name}." for name in head_module_names(model))
    return lambda name: name.startswith(heads)


def _full(model: nn.Module, _method) -> nn.Module:
    return _set_trainable(model, lambda _name: True)


def _freeze(model: nn.Module, _method: FreezeConfig) -> nn.Module:
    return _set_trainable(model, _in_head(model))


def transformer_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The stack of transformer blocks: the longest ``ModuleList`` in the model (any architecture)."""
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no stack of layers for method 'topk'")
    return max(lists, key=lambda item: len(item[1]))


def _topk(model: nn.Module, method: TopKConfig) -> nn.Module:
    prefix, layers = transformer_layers(model)
    if not 1 <= method.k <= len(layers):
        raise ConfigError(f"method.k must be between 1 and {len(layers)} (the model's layer count), got {method.k}")
    top = tuple(f"{prefix}.{i}." for i in range(len(layers) - method.k, len(layers)))
    in_head = _in_head(model)

    def trains(name: str) -> bool:
        # Above the stack (pooler, final norm) also trains; embeddings and lower layers stay frozen.
        above_stack = not name.startswith(f"{prefix}.") and "embed" not in name
        return in_head(name) or name.startswith(top) or above_stack

    return _set_trainable(model, trains)


# Measured on rt-sentences (see docs/benchmarks.md): all four attention projections beat PEFT's
# query/value default at the same <1% budget. Other families fall back to PEFT's own mapping.
_LORA_TARGETS = {"bert": ["query", "key", "value", "attention.output.dense"]}


def _lora(model: nn.Module, method: LoraConfig) -> nn.Module:
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = method.target_modules or _LORA_TARGETS.get(getattr(model.config, "model_type", ""))
    config = PeftLoraConfig(
        r=method.r,
        lora_alpha=method.alpha,
        lora_dropout=method.dropout,
        target_modules=targets,
        use_dora=method.dora,
        modules_to_save=head_module_names(model),
    )
    try:
        return get_peft_model(model, config)
    except ValueError as error:  # no module matched, or a module type LoRA can't wrap
        linear = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ConfigError(f"method.target_modules {targets}: {str(error).splitlines()[0]} "
                          f"(this model's linear layers: {', '.join(linear)})") from None


METHODS.register("full", "train every parameter (best accuracy, largest checkpoint)", _full)
METHODS.register("freeze", "frozen backbone, train the new head only: a linear probe", _freeze)
METHODS.register("topk", "train the last k transformer layers (method.k) and the head", _topk)
METHODS.register("lora", "low-rank adapters through PEFT (method.r, alpha, target_modules); <1% trainable", _lora)
