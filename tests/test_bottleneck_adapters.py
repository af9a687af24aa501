"""Bottleneck adapters (``method.name: adapter``): placement per family, identity at the start, training only the
adapters and the head, a folder of only what trained that reloads to the same predictions, ONNX and int8 exports
that keep the adapters, a merged export refused, and an exact resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import tuneforge
from tests.conftest import tiny_config
from tests.test_token_exports import TEXTS as TAGGER_TEXTS
from tests.test_token_exports import assert_same_entities, tagger_config
from tuneforge.config import AdapterConfig
from tuneforge.errors import ConfigError, RunError
from tuneforge.extensions import Extension
from tuneforge.methods import Target, apply_method, count_parameters, head_module_names
from tuneforge.methods.bottleneck import ADAPTER_SETTINGS, ADAPTER_WEIGHTS, AdaptedLinear

TEXTS = ["a gorgeous, witty, seductive movie.", "the plot is a dull, lifeless mess.", "ok", "not bad at all " * 20]


def _tiny(kind: str):
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        Gemma3TextConfig,
        LlamaConfig,
        LlamaForSequenceClassification,
    )

    from tuneforge.tasks.token_classification.network import Gemma3TextForTokenClassification

    torch.manual_seed(0)
    if kind == "bert":
        return BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                        num_attention_heads=2, intermediate_size=64)).eval()
    if kind == "llama":
        return LlamaForSequenceClassification(LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                          num_attention_heads=2, intermediate_size=64,
                                                          pad_token_id=0)).eval()
    return Gemma3TextForTokenClassification(Gemma3TextConfig(vocab_size=100, hidden_size=32, intermediate_size=64,
                                                             num_hidden_layers=2, num_attention_heads=2,
                                                             num_key_value_heads=1, head_dim=16)).eval()


def _adapted(model, **settings):
    return apply_method(model, AdapterConfig(**settings), Target(heads=tuple(head_module_names(model))))


@pytest.mark.parametrize("kind,houlsby,pfeiffer", [
    ("bert", {"attention.output.dense", "output.dense"}, {"output.dense"}),
    ("llama", {"self_attn.o_proj", "mlp.down_proj"}, {"mlp.down_proj"}),
    ("gemma", {"self_attn.o_proj", "mlp.down_proj"}, {"mlp.down_proj"}),
])
def test_placements_start_as_the_pretrained_model_and_train_only_adapters_and_head(kind, houlsby, pfeiffer):
    ids = torch.tensor([[5, 17, 42, 8, 3]])
    counts = {}
    for placement, expected in (("houlsby", houlsby), ("pfeiffer", pfeiffer)):
        model = _tiny(kind)
        before = model(input_ids=ids).logits
        wrapped = _adapted(model, placement=placement, reduction_factor=4, non_linearity="gelu")
        layers = model.base_model.layers if kind != "bert" else model.bert.encoder.layer
        assert {n for n, m in layers[0].named_modules() if isinstance(m, AdaptedLinear)} == expected
        assert torch.equal(wrapped(input_ids=ids).logits, before)  # zero up-projection: the pretrained outputs
        trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
        assert trainable and all(".adapter." in n or ".classifier." in n or ".score." in n for n in trainable)
        counts[placement] = count_parameters(wrapped)[0]
    head = counts["pfeiffer"] - 2 * (32 * 8 + 8 + 8 * 32 + 32)  # bottleneck 32 / 4 = 8, one adapter per layer
    assert counts["houlsby"] - head == 2 * (counts["pfeiffer"] - head)


def test_unknown_families_and_unsupported_tasks_are_config_errors():
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.mix, self.proj = nn.Linear(8, 8), nn.Linear(8, 8)

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks, self.head = nn.ModuleList([Block(), Block()]), nn.Linear(8, 2)

    with pytest.raises(ConfigError, match="no known adapter placement.*target_modules.*mix, proj"):
        _adapted(Odd())
    wrapped = _adapted(Odd(), target_modules=["proj"])  # the override for other families
    assert isinstance(wrapped.base_model.blocks[1].proj, AdaptedLinear)
    with pytest.raises(ConfigError, match="not among the linear modules.*mix, proj"):
        _adapted(Odd(), target_modules=["nope"])
    with pytest.raises(ConfigError, match="text_classification and token_classification"):
        apply_method(_tiny("llama"), AdapterConfig(), Target(task_type="CAUSAL_LM"))


class Captured(Extension):
    """The trained model's probabilities on TEXTS at report time, before the recipe saves it."""

    name = "captured"

    def report(self, context, model, evaluation):
        from tuneforge.data.text import TokenizedTexts, tokenize
        from tuneforge.tasks.text_classification.recipe import predict_probs

        ids = tokenize(TEXTS, context.tokenizer, context.config.data.max_length)
        self.probs = predict_probs(model, TokenizedTexts(ids, None), context.tokenizer.pad_token_id, 128, False)
        return {}, {}


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, rt_rows):
    """minilm-l6 with Houlsby adapters, 40 steps on 400 real, balanced rt-sentences rows (about 15 s)."""
    import csv

    root = tmp_path_factory.mktemp("bottleneck-text")
    rows = [r for label in ("positive", "negative") for r in [r for r in rt_rows if r["label"] == label][:200]]
    with (root / "reviews.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)
    config = tiny_config("minilm-l6", root / "reviews.csv", root,
                         method={"name": "adapter", "placement": "houlsby"},
                         train={"max_steps": 40, "lr": 5e-3, "epochs": 2})
    captured = Captured()
    run = tuneforge.train(config, extensions=[captured])
    return run, captured.probs


def test_text_run_learns_saves_only_what_trained_and_reloads_identically(text_run):
    run, before = text_run
    assert run.metrics["test"]["accuracy"] > 0.6  # two balanced classes: chance is 0.5
    assert run.metrics["trainable_parameters"] == 226_850  # 12 adapters of 384 -> 24 -> 384, and the 2-label head
    folder = run.dir / "model"
    assert not (folder / "model.safetensors").exists() and not (folder / "config.json").exists()
    saved = load_file(folder / ADAPTER_WEIGHTS)
    assert sum(t.numel() for t in saved.values()) == 226_850 and {"classifier.weight", "classifier.bias"} <= set(saved)
    settings = json.loads((folder / ADAPTER_SETTINGS).read_text())
    assert settings["placement"] == "houlsby" and settings["reduction_factor"] == 16
    assert settings["target_modules"] == ["attention.output.dense", "output.dense"]
    loaded = tuneforge.load(run.dir)
    assert np.array_equal(loaded.predict_proba(TEXTS), before)  # bit-identical after reload
    assert [p.label for p in loaded.predict(TEXTS[:2])] == ["positive", "negative"]


def test_a_damaged_adapter_file_is_a_run_error_naming_it(text_run, tmp_path):
    from safetensors.torch import save_file

    copy = tmp_path / "run"
    shutil.copytree(text_run[0].dir, copy)
    tensors = load_file(copy / "model" / ADAPTER_WEIGHTS)
    tensors.pop("classifier.bias")
    save_file(tensors, copy / "model" / ADAPTER_WEIGHTS)
    with pytest.raises(RunError, match=f"{ADAPTER_WEIGHTS}.*missing \\['classifier.bias'\\]"):
        tuneforge.load(copy)


def test_int8_export_keeps_the_adapters_and_merged_is_refused(text_run, tmp_path):
    """(ONNX keeps them too: the tagger test below exports one, and ``export`` itself refuses a graph that differs.)"""
    from tuneforge.compression.export import export

    run, before = text_run
    int8 = tuneforge.load(export(run.dir, "int8", tmp_path / "int8"))
    assert (tmp_path / "int8" / ADAPTER_SETTINGS).is_file()
    assert np.abs(int8.predict_proba(TEXTS) - before).max() < 0.05  # int8 rounding, not a model without adapters
    with pytest.raises(ConfigError, match="cannot be folded.*--format onnx"):
        export(run.dir, "merged", tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
    with pytest.raises(ConfigError, match="--format onnx"):
        tuneforge.load(run.dir).save_merged(tmp_path / "merged-api")


def test_distilling_or_pruning_an_adapter_run_is_refused_clearly(text_run, tmp_path):
    from tuneforge.compression.distill import distill
    from tuneforge.compression.pruning import prune

    with pytest.raises(ConfigError, match=r"distill \(a student from model.name.*\): bottleneck adapters"):
        distill(text_run[0].dir)  # the default student copies the teacher's layers, which cannot hold adapters
    with pytest.raises(ConfigError, match="prune: bottleneck adapters"):
        prune(text_run[0].dir, "magnitude", 0.3, out=tmp_path / "pruned")
    # a student from model.name needs only the teacher's outputs
    student = distill(text_run[0].dir, None, ["distill.from_teacher=false", "train.max_steps=2",
                                              f"output.dir={tmp_path}", "output.progress=false"])
    assert student.metrics["fit"]["steps"] == 2 and (student.dir / "model" / "model.safetensors").is_file()


def _documents() -> list[tuple[str, tuple]]:
    from tuneforge.data.tagging import split_words

    return [(text, tuple(split_words(text))) for text in TAGGER_TEXTS]


class CapturedTags(Extension):
    """The trained tagger's tags and scores on TAGGER_TEXTS at report time, before the recipe saves it."""

    name = "captured_tags"

    def report(self, context, model, evaluation):
        from tuneforge.tasks.token_classification.encoding import WordTokenizer
        from tuneforge.tasks.token_classification.inference import Tagging, tag_windows

        tagging = Tagging(WordTokenizer(context.tokenizer), model.tag_names, 32, context.config.ner.stride)
        tags, scores, _ = tag_windows(model, tagging.windows(_documents()), context.tokenizer.pad_token_id or 0, 64)
        self.tags = (tags, scores)
        return {}, {}


def test_tagger_with_adapters_reloads_and_exports_onnx_with_the_same_entities(tmp_path):
    """A tiny random Gemma 3 (the Chinese backbone's architecture) tagger with Pfeiffer adapters and a CRF."""
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    from tuneforge.assets import resolve_model
    from tuneforge.compression.export import export

    backbone = tmp_path / "tiny-gemma"
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                       head_dim=16, max_position_embeddings=128, sliding_window=8,
                                       pad_token_id=tokenizer.pad_token_id)).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    captured = CapturedTags()
    run = tuneforge.train(tagger_config(tmp_path, str(backbone), method={"name": "adapter", "reduction_factor": 4},
                                        ner={"crf": True}, train={"epochs": 1, "lr": 1e-2}), extensions=[captured])
    assert {ADAPTER_WEIGHTS, ADAPTER_SETTINGS, "crf.safetensors"} <= {p.name for p in (run.dir / "model").iterdir()}
    tagger = tuneforge.load(run.dir)
    assert tagger.tag(_documents()) == captured.tags  # tags and scores identical after reload
    expected = tagger.predict(TAGGER_TEXTS)
    onnx = tuneforge.load(export(run.dir, "onnx", tmp_path / "onnx"))
    assert_same_entities(onnx.predict(TAGGER_TEXTS), expected, 1e-4)
    with pytest.raises(ConfigError, match="--format onnx"):
        export(run.dir, "merged", tmp_path / "merged")


def test_resume_mid_run_ends_bit_identical(tiny_bert, rt_csv, tmp_path, capsys):
    config = tiny_config(tiny_bert, rt_csv, tmp_path, method={"name": "adapter", "reduction_factor": 4},
                         train={"max_steps": 8, "checkpoint": {"every": 4, "keep_last": 5}})
    config["deterministic"] = True
    reference = tuneforge.train(config)
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(reference.dir, resumed_dir)
    for later in [p for p in (resumed_dir / "checkpoints").glob("step-*") if int(p.name[5:]) > 4]:
        shutil.rmtree(later)
    shutil.rmtree(resumed_dir / "model")
    capsys.readouterr()
    tuneforge.train(config, resume=resumed_dir)
    assert "resumed from" in capsys.readouterr().err  # from the step-4 checkpoint, four steps to go
    expected = load_file(reference.dir / "model" / ADAPTER_WEIGHTS)
    got = load_file(resumed_dir / "model" / ADAPTER_WEIGHTS)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
