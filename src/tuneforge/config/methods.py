"""One config class per adaptation method; `method.name` picks which (tuneforge.methods registers the code).

A new method is one dataclass here with a ``name`` Literal and a ``check``, one entry in ``METHOD_CONFIGS`` and
one member of ``MethodConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tuneforge.config.fields import require, setting


@dataclass
class FullConfig:
    name: Literal["full"] = setting("full", "Train every parameter.")

    def check(self, source: str) -> None:
        """Nothing to check: there are no options."""


@dataclass
class FreezeConfig:
    name: Literal["freeze"] = setting("freeze", "Freeze the backbone, train only the new head (linear probe).")
    cache_features: bool = setting(
        False, "image_classification: compute the frozen backbone's features once (no augmentation) and train "
        "the head on them: seconds per epoch instead of minutes."
    )

    def check(self, source: str) -> None:
        """Nothing to check: every value of the right type works."""


@dataclass
class TopKConfig:
    name: Literal["topk"] = setting("topk", "Train the last k transformer layers and the head.")
    k: int = setting(2, "Number of top layers to train.")

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work (``source`` names the file in the message)."""
        require(source, [("method.k", self.k, self.k >= 1, "at least 1")])


@dataclass
class LoraConfig:
    name: Literal["lora"] = setting("lora", "Low-rank adapters (PEFT) on the chosen modules; head trained fully.")
    r: int = setting(8, "Adapter rank.")
    alpha: float = setting(16.0, "Scaling numerator: adapters are scaled by alpha / r.")
    dropout: float = setting(0.1, "Dropout on the adapter input.")
    target_modules: list[str] | None = setting(
        None,
        "Module name suffixes to adapt; null = tuneforge's tuned choice for the model family "
        "(BERT: query, key, value, attention.output.dense), else PEFT's default.",
    )
    dora: bool = setting(False, "Weight-decomposed LoRA (DoRA).")

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work."""
        require(source, [
            ("method.alpha", self.alpha, self.alpha > 0, "positive"),
            ("method.dropout", self.dropout, 0 <= self.dropout < 1, "in [0, 1)"),
            ("method.r", self.r, self.r >= 1, "at least 1"),
        ])


@dataclass
class AdaLoraConfig:
    name: Literal["adalora"] = setting("adalora", "LoRA whose ranks are reallocated to the most important layers.")
    init_r: int = setting(12, "Starting rank of every adapter.")
    target_r: int = setting(4, "Average rank left after allocation (the budget).")
    alpha: float = setting(16.0, "Scaling numerator.")
    dropout: float = setting(0.1, "Dropout on the adapter input.")
    target_modules: list[str] | None = setting(None, "As for lora; null = tuneforge's choice for the family.")
    tinit: float = setting(0.1, "Share of steps before rank pruning starts.")
    tfinal: float = setting(0.2, "Share of final steps with ranks fixed.")
    delta_t: int = setting(5, "Reallocate ranks every this many steps.")
    orth_reg_weight: float = setting(0.5, "Weight of the orthogonality regulariser on the adapter factors.")

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work."""
        require(source, [
            ("method.alpha", self.alpha, self.alpha > 0, "positive"),
            ("method.dropout", self.dropout, 0 <= self.dropout < 1, "in [0, 1)"),
            ("method.target_r", self.target_r, 1 <= self.target_r <= self.init_r, "between 1 and method.init_r"),
            ("method.tinit", self.tinit, 0 <= self.tinit and self.tinit + self.tfinal < 1,
             "with tfinal: >= 0, sum < 1"),
            ("method.tfinal", self.tfinal, 0 <= self.tfinal < 1, "in [0, 1)"),
            ("method.delta_t", self.delta_t, self.delta_t >= 1, "at least 1"),
            ("method.orth_reg_weight", self.orth_reg_weight, self.orth_reg_weight >= 0, "not negative"),
        ])


@dataclass
class IA3Config:
    name: Literal["ia3"] = setting("ia3", "(IA)3: learned rescaling vectors on keys, values and the FFN.")
    target_modules: list[str] | None = setting(None, "Modules to rescale; null = PEFT's choice for the family.")
    feedforward_modules: list[str] | None = setting(
        None, "Which of target_modules are feed-forward (scaled on the input); null = PEFT's choice."
    )

    def check(self, source: str) -> None:
        """Nothing to check: every value of the right type works."""


@dataclass
class PrefixTuningConfig:
    name: Literal["prefix_tuning"] = setting("prefix_tuning", "Trained key/value prefixes in every layer.")
    num_virtual_tokens: int = setting(16, "Prefix length.")
    projection: bool = setting(False, "Reparameterise the prefix through an MLP (more stable, more parameters).")

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work."""
        require(source, [("method.num_virtual_tokens", self.num_virtual_tokens, self.num_virtual_tokens >= 1,
                          "at least 1")])


@dataclass
class PromptTuningConfig:
    name: Literal["prompt_tuning"] = setting("prompt_tuning", "Trained soft-prompt embeddings before the input.")
    num_virtual_tokens: int = setting(16, "Soft-prompt length.")
    init_text: str | None = setting(
        None, "Initialise the soft prompt from this text's token embeddings (else random vocabulary rows)."
    )

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work."""
        require(source, [("method.num_virtual_tokens", self.num_virtual_tokens, self.num_virtual_tokens >= 1,
                          "at least 1")])


@dataclass
class AdapterConfig:
    name: Literal["adapter"] = setting(
        "adapter", "Bottleneck adapters (Houlsby/Pfeiffer) after each layer's output projections; base model frozen."
    )
    placement: Literal["houlsby", "pfeiffer"] = setting(
        "pfeiffer", "houlsby: an adapter after the attention output and after the feed-forward output of every "
        "layer; pfeiffer: after the feed-forward output only (half the parameters)."
    )
    reduction_factor: int = setting(16, "Bottleneck width = hidden size / reduction_factor (minilm-l6: 384/16 = 24).")
    non_linearity: Literal["relu", "gelu"] = setting("relu", "Activation between the down- and up-projection.")
    target_modules: list[str] | None = setting(
        None, "Module names inside each transformer layer to put an adapter after (e.g. [attn.c_proj, mlp.c_proj]), "
        "overriding placement; null = the placement's modules for the family (BERT, Llama, Gemma, DistilBERT)."
    )

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work."""
        require(source, [
            ("method.reduction_factor", self.reduction_factor, self.reduction_factor >= 1, "at least 1"),
            ("method.target_modules", self.target_modules, self.target_modules is None or len(self.target_modules) > 0,
             "a non-empty list or null"),
        ])


METHOD_CONFIGS: dict[str, type] = {
    "full": FullConfig,
    "freeze": FreezeConfig,
    "topk": TopKConfig,
    "lora": LoraConfig,
    "adalora": AdaLoraConfig,
    "ia3": IA3Config,
    "prefix_tuning": PrefixTuningConfig,
    "prompt_tuning": PromptTuningConfig,
    "adapter": AdapterConfig,
}
MethodConfig = (FullConfig | FreezeConfig | TopKConfig | LoraConfig | AdaLoraConfig | IA3Config
                | PrefixTuningConfig | PromptTuningConfig | AdapterConfig)
DEFAULT_METHOD = "lora"  # the quickstart's method: what a config without `method.name` gets
