"""Fine-tuning methods: which parameters train, chosen by ``method.name``.

Every method is a function ``(model, method_config, target) -> model`` registered under its short
name. The new task head (what a pretrained checkpoint did not have) always trains: a frozen random
head would be useless, and for adapters it is saved beside the adapter so a reloaded model predicts
exactly as it did before saving. Language-model tasks have no new head.

The parameter-efficient methods (lora, adalora, ia3, prefix_tuning, prompt_tuning) are PEFT's own;
tuneforge picks their targets per model family and runs what plain training loops forget (AdaLoRA's
rank allocator and its orthogonality regulariser, see ``method_extensions``). Bottleneck adapters
(``adapter``) are tuneforge's own, in ``methods.bottleneck``: PEFT has none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from tuneforge.config import (
    AdaLoraConfig,
    AdapterConfig,
    FreezeConfig,
    IA3Config,
    LoraConfig,
    PrefixTuningConfig,
    PromptTuningConfig,
    TopKConfig,
)
from tuneforge.errors import ConfigError
from tuneforge.extensions import Extension
from tuneforge.registry import Registry


@dataclass(frozen=True)
class Target:
    """What a method adapts: the new head modules, PEFT's task type, and the run length (AdaLoRA)."""

    heads: tuple[str, ...] = ()
    task_type: str | None = "SEQ_CLS"  # "SEQ_CLS", "CAUSAL_LM", or None (masked LM: no prompt methods)
    total_steps: int | None = None
    tokenizer_path: str | None = None  # prompt_tuning's text initialisation tokenizes with it


MethodFn = Callable[[nn.Module, object, Target], nn.Module]
METHODS: Registry[MethodFn] = Registry("method")


def apply_method(model: nn.Module, method, target: Target | None = None) -> nn.Module:
    """Mark the parameters that train under ``method`` (wrapping the model for PEFT methods).

    ``target`` defaults to classification: the new head is every top-level module outside the backbone.
    """
    target = target or Target(heads=tuple(head_module_names(model)))
    return METHODS.get(method.name)(model, method, target)


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


def _in_head(target: Target) -> Callable[[str], bool]:
    heads = tuple(f"{name}." for name in target.heads)
    return lambda name: bool(heads) and name.startswith(heads)


def _full(model: nn.Module, _method, _target: Target) -> nn.Module:
    return _set_trainable(model, lambda _name: True)


def _freeze(model: nn.Module, _method: FreezeConfig, target: Target) -> nn.Module:
    if not target.heads:
        raise ConfigError("method 'freeze' trains only a new task head, and language modelling has none; "
                          "use topk, lora or another adapter method")
    return _set_trainable(model, _in_head(target))


def transformer_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The stack of transformer blocks: the longest ``ModuleList`` in the model (any architecture)."""
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no stack of layers for method 'topk'")
    return max(lists, key=lambda item: len(item[1]))


def _topk(model: nn.Module, method: TopKConfig, target: Target) -> nn.Module:
    prefix, layers = transformer_layers(model)
    if not 1 <= method.k <= len(layers):
        raise ConfigError(f"method.k must be between 1 and {len(layers)} (the model's layer count), got {method.k}")
    top = tuple(f"{prefix}.{i}." for i in range(len(layers) - method.k, len(layers)))
    in_head = _in_head(target)
    # Above the stack (pooler, final norm, a CNN's last conv) also trains; what comes before it
    # (embeddings, a CNN's stem) and the lower layers stay frozen. Parameters are registered in order.
    names = [name for name, _ in model.named_parameters()]
    last_in_stack = max(i for i, name in enumerate(names) if name.startswith(f"{prefix}."))
    above_stack = {name for name in names[last_in_stack + 1 :] if "embed" not in name}

    def trains(name: str) -> bool:
        return in_head(name) or name.startswith(top) or name in above_stack

    return _set_trainable(model, trains)


# Measured on rt-sentences (see docs/benchmarks.md): all four attention projections beat PEFT's
# query/value default at the same <1% budget. Other families fall back to PEFT's own mapping.
_LORA_TARGETS = {"bert": ["query", "key", "value", "attention.output.dense"]}


def _lora_targets(model: nn.Module, chosen: list[str] | None) -> list[str] | None:
    if chosen:
        return chosen
    if hasattr(model, "default_lora_targets"):  # tuneforge's own models (the image classifier) say theirs
        return list(model.default_lora_targets)
    return _LORA_TARGETS.get(getattr(getattr(model, "config", None), "model_type", ""))


def _lora(model: nn.Module, method: LoraConfig, target: Target) -> nn.Module:
    from peft import LoraConfig as PeftLoraConfig

    config = PeftLoraConfig(
        r=method.r,
        lora_alpha=method.alpha,
        lora_dropout=method.dropout,
        target_modules=_lora_targets(model, method.target_modules),
        use_dora=method.dora,
        **_peft_common(target),
    )
    return _wrap(model, config, "target_modules")


def _adalora(model: nn.Module, method: AdaLoraConfig, target: Target) -> nn.Module:
    from peft import AdaLoraConfig as PeftAdaLoraConfig

    steps = target.total_steps
    if steps is None or steps < 4:
        raise ConfigError(f"method 'adalora' needs a run of at least 4 optimizer steps to allocate ranks in "
                          f"(this run has {steps}); train longer or use lora")
    tinit, tfinal = round(method.tinit * steps), round(method.tfinal * steps)
    config = PeftAdaLoraConfig(
        init_r=method.init_r,
        target_r=method.target_r,
        lora_alpha=method.alpha,
        lora_dropout=method.dropout,
        target_modules=_lora_targets(model, method.target_modules),
        total_step=steps,
        tinit=tinit,
        tfinal=min(tfinal, steps - tinit - 1),
        deltaT=method.delta_t,
        orth_reg_weight=method.orth_reg_weight,
        **_peft_common(target),
    )
    return _wrap(model, config, "target_modules")


def _ia3(model: nn.Module, method: IA3Config, target: Target) -> nn.Module:
    from peft import IA3Config as PeftIA3Config

    config = PeftIA3Config(target_modules=method.target_modules, feedforward_modules=method.feedforward_modules,
                           **_peft_common(target))
    return _wrap(model, config, "target_modules")


def _prefix_tuning(model: nn.Module, method: PrefixTuningConfig, target: Target) -> nn.Module:
    from peft import PrefixTuningConfig as PeftPrefixTuningConfig

    _needs_prompt_task(target, method.name)
    config = PeftPrefixTuningConfig(num_virtual_tokens=method.num_virtual_tokens,
                                    prefix_projection=method.projection, **_peft_common(target))
    return _wrap(model, config, "num_virtual_tokens")


def _prompt_tuning(model: nn.Module, method: PromptTuningConfig, target: Target) -> nn.Module:
    from peft import PromptTuningConfig as PeftPromptTuningConfig

    _needs_prompt_task(target, method.name)
    initialisation = {"prompt_tuning_init": "SAMPLE_VOCAB"}
    if method.init_text:
        initialisation = {"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": method.init_text,
                          "tokenizer_name_or_path": target.tokenizer_path}
    config = PeftPromptTuningConfig(num_virtual_tokens=method.num_virtual_tokens, **initialisation,
                                    **_peft_common(target))
    return _wrap(model, config, "num_virtual_tokens")


def _needs_prompt_task(target: Target, name: str) -> None:
    if target.task_type is None:
        raise ConfigError(f"method '{name}' works for classification, causal_lm and sft, not masked_lm; "
                          "use lora, adalora or ia3")


def _peft_common(target: Target) -> dict:
    return {"task_type": target.task_type, "modules_to_save": list(target.heads) or None}


def _wrap(model: nn.Module, config, setting: str) -> nn.Module:
    from peft import get_peft_model

    try:
        return get_peft_model(model, config)
    except ValueError as error:  # no module matched, or a module type the method can't wrap
        linear = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ConfigError(f"method.{setting} {getattr(config, setting)}: {str(error).splitlines()[0]} "
                          f"(this model's linear layers: {', '.join(linear)})") from None


def _adapter(model: nn.Module, method: AdapterConfig, target: Target) -> nn.Module:
    # The wrapper saves only adapters and head, and only the classifier loaders rebuild it; a language model's
    # loader would look for a transformers folder that is not there.
    if target.task_type not in ("SEQ_CLS", "TOKEN_CLS"):
        raise ConfigError("method 'adapter' (bottleneck adapters) works for text_classification and "
                          "token_classification; for language models and images use lora, adalora or ia3")
    from tuneforge.methods.bottleneck import apply_adapters  # here: it imports transformer_layers from this module

    return apply_adapters(model, method, target.heads)


# --------------------------------------------------------------------------- training work of a method


def method_extensions(model: nn.Module) -> list[Extension]:
    """The training extensions a method needs beyond backward/step: AdaLoRA's rank allocator, else none."""
    base = getattr(model, "base_model", None)
    if base is None or not hasattr(base, "update_and_allocate"):
        return []
    return [AdaLoraAllocation(base)]


class AdaLoraAllocation(Extension):
    """AdaLoRA: the orthogonality regulariser and the rank allocator (``update_and_allocate``).

    PEFT adds the regulariser only to a loss the model computes itself from ``labels``; tuneforge's
    tasks compute their losses outside the model, so it is added here, as PEFT computes it. The
    allocator's importance averages and the rank pattern are checkpointed, so an AdaLoRA run resumes exactly.
    """

    name = "adalora"

    def __init__(self, base: nn.Module) -> None:
        self.base = base
        adapter = base.trainable_adapter_name
        self.settings = base.peft_config[adapter]
        self.factors = [(name, p) for name, p in base.model.named_parameters()
                        if ("lora_A" in name or "lora_B" in name) and adapter in name]

    def orthogonality(self) -> torch.Tensor:
        total = 0.0
        for name, p in self.factors:
            covariance = p @ p.T if "lora_A" in name else p.T @ p
            total = total + torch.norm(covariance - torch.eye(*covariance.shape, device=p.device), p="fro")
        return self.settings.orth_reg_weight * total / max(len(self.factors), 1)

    def loss_terms(self, state, batch: dict, loss: torch.Tensor) -> torch.Tensor:
        return loss + self.orthogonality()

    def after_optimizer_step(self, state) -> None:
        self.base.update_and_allocate(state.step)  # importance from this step's gradients, before zero_grad

    def state_dict(self) -> dict:
        allocator = self.base.rankallocator
        return {"ipt": dict(allocator.ipt), "exp_avg_ipt": dict(allocator.exp_avg_ipt),
                "exp_avg_unc": dict(allocator.exp_avg_unc), "rank_pattern": self.settings.rank_pattern}

    def load_state_dict(self, state: dict) -> None:
        allocator = self.base.rankallocator
        device = next(self.base.parameters()).device
        for key in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
            setattr(allocator, key, {name: value.to(device) for name, value in state[key].items()})
        self.settings.rank_pattern = state["rank_pattern"]


METHODS.register("full", "train every parameter (best accuracy, largest checkpoint)", _full)
METHODS.register("freeze", "frozen backbone, train the new head only: a linear probe", _freeze)
METHODS.register("topk", "train the last k transformer layers (method.k) and the head", _topk)
METHODS.register("lora", "low-rank adapters through PEFT (method.r, alpha, target_modules, dora); <1% trainable",
                 _lora)
METHODS.register("adalora", "LoRA with ranks reallocated by importance during training (PEFT AdaLoRA)", _adalora)
METHODS.register("ia3", "(IA)3: learned scaling vectors on keys, values and FFN (PEFT); ~0.1% trainable", _ia3)
METHODS.register("prefix_tuning", "trained key/value prefixes in every layer (PEFT); base model untouched",
                 _prefix_tuning)
METHODS.register("prompt_tuning", "trained soft-prompt embeddings before the input (PEFT)", _prompt_tuning)
METHODS.register("adapter", "bottleneck adapters after each layer's output projections (Houlsby/Pfeiffer; "
                 "method.placement, reduction_factor); ~0.5-1% trainable", _adapter)
