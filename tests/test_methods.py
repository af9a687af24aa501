"""Which parameters train under each method, on a tiny in-memory BERT."""

import pytest
from transformers import BertConfig, BertForSequenceClassification

from tuneforge.config import FreezeConfig, FullConfig, LoraConfig, TopKConfig
from tuneforge.errors import ConfigError, RegistryError
from tuneforge.methods import METHODS, apply_method, count_parameters, head_module_names


def tiny(num_labels: int = 3) -> BertForSequenceClassification:
    config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=32, num_labels=num_labels)
    return BertForSequenceClassification(config)


def trainable_names(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_registry_lists_the_methods():
    assert {"full", "freeze", "topk", "lora"} <= {entry.name for entry in METHODS}
    with pytest.raises(RegistryError, match="did you mean 'lora'"):
        METHODS.get("lorra")


def test_head_is_the_classifier():
    assert head_module_names(tiny()) == ["classifier"]


def test_full_trains_everything():
    model = apply_method(tiny(), FullConfig())
    trainable, total = count_parameters(model)
    assert trainable == total


def test_freeze_trains_only_the_head():
    model = apply_method(tiny(num_labels=3), FreezeConfig())
    assert trainable_names(model) == {"classifier.weight", "classifier.bias"}
    assert count_parameters(model)[0] == 16 * 3 + 3


def test_topk_trains_last_k_layers_pooler_and_head():
    model = apply_method(tiny(), TopKConfig(k=1))
    names = trainable_names(model)
    assert any(n.startswith("bert.encoder.layer.3.") for n in names)
    assert not any(n.startswith(("bert.encoder.layer.2.", "bert.encoder.layer.0.", "bert.embeddings")) for n in names)
    assert {"classifier.weight", "bert.pooler.dense.weight"} <= names


def test_topk_k_out_of_range():
    with pytest.raises(ConfigError, match="method.k must be between 1 and 4"):
        apply_method(tiny(), TopKConfig(k=9))


def test_lora_adapters_plus_trainable_head():
    model = apply_method(tiny(), LoraConfig(r=2, target_modules=["query", "value"]))
    names = trainable_names(model)
    assert any("lora_A" in n for n in names) and any("lora_B" in n for n in names)
    assert any("classifier" in n for n in names)  # the new head trains (modules_to_save)
    assert not any("embeddings" in n for n in names)
    adapters = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert adapters == 4 * 2 * (2 * (16 + 16))  # layers x modules x rank x (in + out)
