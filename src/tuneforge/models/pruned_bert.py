"""A BERT whose layers keep different numbers of attention heads and FFN neurons (``tuneforge prune``).

This file is copied into every head- or FFN-pruned model folder and named in its ``config.json``
``auto_map``, so plain transformers loads the folder on its own:
``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)``.
It depends on transformers and torch only.
"""

from torch import nn
from transformers import BertConfig, BertForSequenceClassification


class PrunedBertConfig(BertConfig):
    model_type = "pruned_bert"

    def __init__(self, heads_per_layer=None, intermediate_per_layer=None, **kwargs):
        super().__init__(**kwargs)
        layers = self.num_hidden_layers
        self.heads_per_layer = list(heads_per_layer or [self.num_attention_heads] * layers)
        self.intermediate_per_layer = list(intermediate_per_layer or [self.intermediate_size] * layers)


class PrunedBertForSequenceClassification(BertForSequenceClassification):
    config_class = PrunedBertConfig

    def __init__(self, config):
        super().__init__(config)
        head_size = config.hidden_size // config.num_attention_heads  # the unpruned model's head width
        for layer, heads, inner in zip(self.bert.encoder.layer, config.heads_per_layer,
                                       config.intermediate_per_layer, strict=True):
            attention = layer.attention.self
            attention.num_attention_heads = heads
            attention.all_head_size = heads * head_size
            attention.query = nn.Linear(config.hidden_size, heads * head_size)
            attention.key = nn.Linear(config.hidden_size, heads * head_size)
            attention.value = nn.Linear(config.hidden_size, heads * head_size)
            layer.attention.output.dense = nn.Linear(heads * head_size, config.hidden_size)
            layer.intermediate.dense = nn.Linear(config.hidden_size, inner)
            layer.output.dense = nn.Linear(inner, config.hidden_size)
        self.post_init()


# Saving either class writes ``auto_map`` into config.json and copies this file beside the weights.
PrunedBertConfig.register_for_auto_class()
PrunedBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
