"""Exports of entity taggers (token classification): a merged folder that plain transformers loads and an ONNX graph,
both predicting the entities of the run they came from; int8 refused. On a MiniLM-L6 + LoRA + CRF run trained in
seconds on generated English sentences, and a tiny random Gemma 3 (the Chinese backbone's architecture)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

import tuneforge
from tuneforge.errors import ConfigError

# Real names, places and companies in varied sentences: enough for a tagger to learn in a few steps.
PEOPLE = ["Angela Merkel", "Emmanuel Macron", "Barack Obama", "Marie Curie", "Albert Einstein", "Serena Williams",
          "Taylor Swift", "Lionel Messi", "Jacinda Ardern", "Satya Nadella", "Tim Cook", "Greta Thunberg",
          "Nelson Mandela", "Ada Lovelace", "Maria Garcia", "Yuki Tanaka"]
PLACES = ["Paris", "Berlin", "London", "Tokyo", "New York", "Madrid", "Rome", "Sydney", "Toronto", "Cairo", "Mumbai",
          "Beijing", "Lisbon", "Vienna", "Chicago", "Nairobi", "San Francisco"]
COMPANIES = ["Microsoft", "Google", "Siemens", "Toyota", "the United Nations", "Apple", "Amazon", "Nestle",
             "Volkswagen", "Samsung", "the World Bank", "Airbus", "Oxford University", "Reuters", "Netflix", "IBM"]
TEMPLATES = ["{PER} visited {LOC} last week .", "{PER} works for {ORG} in {LOC} .",
             "{ORG} opened a new office in {LOC} .", "Yesterday {PER} met {PER} in {LOC} .",
             "{PER} said {ORG} will hire more engineers .", "The CEO of {ORG} , {PER} , spoke in {LOC} .",
             "In {LOC} , {ORG} announced record profits .", "{PER} moved from {LOC} to {LOC} .",
             "Reporters asked {PER} about {ORG} .", "{ORG} and {ORG} signed a deal in {LOC} .",
             "According to {ORG} , prices in {LOC} rose sharply .", "{PER} flew to {LOC} on Monday ."]
TEXTS = ["Angela Merkel met Emmanuel Macron in Paris.", "Satya Nadella said Microsoft will open an office in Lisbon.",
         "李明昨天在北京参观了清华大学。", "Tim Cook works for Apple in Tokyo . " * 12, "ok"]


def write_conll(path: Path, sentences: int = 100, seed: int = 0) -> Path:
    """A CoNLL file (token TAB BIO tag, a blank line between sentences) of generated sentences."""
    rng, names = random.Random(seed), {"PER": PEOPLE, "LOC": PLACES, "ORG": COMPANIES}
    lines = []
    for _ in range(sentences):
        for piece in rng.choice(TEMPLATES).split():
            if piece.startswith("{"):
                kind = piece[1:4]
                lines += [f"{word}\t{'B' if i == 0 else 'I'}-{kind}"
                          for i, word in enumerate(rng.choice(names[kind]).split())]
            else:
                lines.append(f"{piece}\tO")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tagger_config(root: Path, model: str = "minilm-l6", **sections) -> dict:
    """A token-classification config that trains in seconds on ``write_conll``'s sentences."""
    config = {"task": "token_classification", "name": "ner", "model": {"name": model}, "method": {"name": "lora"},
              "data": {"dataset": None, "train_file": str(write_conll(root / "train.conll")), "max_length": 32},
              "train": {"epochs": 2, "batch_size": 16, "lr": 6e-3, "log_every": 50},
              "output": {"dir": str(root / "runs"), "progress": False, "tensorboard": False}}
    for key, value in sections.items():
        config.setdefault(key, {}).update(value)
    return config


def assert_same_entities(got: list[list[dict]], expected: list[list[dict]], tolerance: float) -> None:
    assert [[(e["type"], e["start"], e["end"], e["text"], e["source"]) for e in found] for found in got] == \
        [[(e["type"], e["start"], e["end"], e["text"], e["source"]) for e in found] for found in expected]
    for found, wanted in zip(got, expected, strict=True):
        assert [e["score"] for e in found] == pytest.approx([e["score"] for e in wanted], abs=tolerance)


@pytest.fixture(scope="module")
def crf_run(tmp_path_factory) -> Path:
    """MiniLM-L6 + LoRA + CRF, two epochs on 100 generated sentences (about 8 s)."""
    root = tmp_path_factory.mktemp("ner-crf")
    return tuneforge.train(tagger_config(root, ner={"crf": True})).dir


@pytest.fixture(scope="module")
def expected(crf_run) -> list[list[dict]]:
    found = tuneforge.load(crf_run).predict(TEXTS)
    assert any(found[:2]), "the test tagger found no entity at all"
    return found


@pytest.fixture(scope="module")
def exports(crf_run, tmp_path_factory) -> dict[str, Path]:
    from tuneforge.compression.export import export

    root = tmp_path_factory.mktemp("ner-exports")
    return {fmt: export(crf_run, fmt, root / fmt) for fmt in ("merged", "onnx")}


def test_merged_export_is_a_plain_transformers_folder_that_predicts_the_same(exports, crf_run, expected):
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    folder = exports["merged"]
    assert {"config.json", "model.safetensors", "crf.safetensors", "tuneforge.json"} <= {p.name for p in
                                                                                           folder.iterdir()}
    plain = AutoModelForTokenClassification.from_pretrained(folder).eval()
    tagger = tuneforge.load(folder)
    assert plain.config.id2label == dict(enumerate(tagger.tags))
    encoded = AutoTokenizer.from_pretrained(folder)(TEXTS[:2], return_tensors="pt", padding=True)
    with torch.no_grad():  # the same network as the run's (adapters folded in)
        run_logits = tuneforge.load(crf_run).merged()(**encoded).logits
        assert (plain(**encoded).logits - run_logits).abs().max() < 1e-5
    found = pipeline("token-classification", model=folder, aggregation_strategy="first")(TEXTS[0])
    assert {e["entity_group"] for e in found} <= {"PER", "LOC", "ORG"} and found
    assert_same_entities(tagger.predict(TEXTS), expected, 1e-5)


def test_onnx_export_predicts_the_same_entities(exports, expected):
    from tuneforge.tasks.token_classification.model import ExportedTagger

    folder = exports["onnx"]
    meta = json.loads((folder / "tuneforge.json").read_text(encoding="utf-8"))
    assert meta["format"] == "onnx" and meta["crf"] and (folder / "crf.safetensors").is_file()
    tagger = tuneforge.load(folder)
    assert isinstance(tagger.tagger, ExportedTagger)
    assert_same_entities(tagger.predict(TEXTS), expected, 1e-4)


def test_exports_serve_the_same_entities(exports, expected):
    from fastapi.testclient import TestClient

    from tuneforge.config import config_from_dict
    from tuneforge.serving.app import create_app
    from tuneforge.serving.models import inspect

    models = {fmt: inspect(fmt, folder) for fmt, folder in exports.items()}
    for served in models.values():
        served.load()
    with TestClient(create_app(models, config_from_dict({"serve": {"auth": False}}).serve, None)) as client:
        for fmt in exports:
            response = client.post("/v1/extract", json={"model": fmt, "texts": TEXTS[:3]})
            assert response.status_code == 200, response.text
            assert_same_entities([item["entities"] for item in response.json()["data"]], expected[:3], 1e-4)


def test_onnx_graph_takes_ids_and_mask_and_gives_token_logits(exports):
    import onnxruntime
    from transformers import AutoTokenizer

    session = onnxruntime.InferenceSession(str(exports["onnx"] / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    encoded = AutoTokenizer.from_pretrained(exports["onnx"])(TEXTS, return_tensors="np", padding=True)
    (logits,) = session.run(None, {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})
    assert logits.shape == (*encoded["input_ids"].shape, 7)  # (B, T, K): O and B-/I- of LOC, ORG, PER


def test_a_graph_that_does_not_reproduce_the_model_is_refused(exports):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from tuneforge.compression.export import check_onnx

    model = AutoModelForTokenClassification.from_pretrained(exports["merged"]).eval()
    sample = AutoTokenizer.from_pretrained(exports["merged"])(TEXTS[:2], return_tensors="pt", padding=True)
    inputs = (sample["input_ids"], sample["attention_mask"])
    check_onnx(model, exports["onnx"] / "model.onnx", inputs)  # the graph of this very network
    with torch.no_grad():
        model.classifier.bias[1] += 0.5
    with pytest.raises(ConfigError, match="does not reproduce it"):
        check_onnx(model, exports["onnx"] / "model.onnx", inputs)


def test_int8_and_exports_of_exports_are_refused(crf_run, exports, tmp_path, capsys, monkeypatch):
    from tuneforge.cli import main
    from tuneforge.compression.export import export

    for fmt in ("int8", "onnx-int8"):
        with pytest.raises(ConfigError, match=f"token_classification run exports as merged or onnx, not {fmt}"):
            export(crf_run, fmt, tmp_path / fmt)
        assert not (tmp_path / fmt).exists()
    assert main(["export", str(exports["onnx"]), "--format", "onnx", "--out", str(tmp_path / "again")]) == 2
    assert "fp32" in capsys.readouterr().err

    def cannot(*_args, **_kwargs):
        raise RuntimeError("Unsupported: an operator torch.export cannot trace\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", cannot)
    with pytest.raises(ConfigError, match=r"torch.onnx cannot export this bert model \(RuntimeError: Unsupported"):
        export(crf_run, "onnx", tmp_path / "refused")
    assert not (tmp_path / "refused").exists() and not list(tmp_path.glob(".refused-*"))  # no broken file left


def test_a_gemma3_tagger_exports_merged_and_onnx(tmp_path):
    """Gemma 3 (gemma3_text, made bidirectional, tuneforge's own token-classification class): a tiny random one with
    MiniLM's small vocabulary, so the architecture is exercised in seconds."""
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    from tuneforge.assets import resolve_model
    from tuneforge.compression.export import export
    from tuneforge.data.tagging import split_words

    backbone = tmp_path / "tiny-gemma"
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    config = Gemma3TextConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                              max_position_embeddings=128, sliding_window=8, pad_token_id=tokenizer.pad_token_id)
    Gemma3ForCausalLM(config).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    run = tuneforge.train(tagger_config(tmp_path, str(backbone), method={"name": "full"},
                                        train={"epochs": 1, "max_steps": 2})).dir
    documents = [(text, tuple(split_words(text))) for text in TEXTS]
    original = tuneforge.load(run)
    expected, (tags, scores) = original.predict(TEXTS), original.tag(documents)
    for fmt in ("merged", "onnx"):
        folder = export(run, fmt, tmp_path / fmt)
        assert json.loads((folder / "config.json").read_text())["use_bidirectional_attention"] is True
        exported = tuneforge.load(folder)
        assert_same_entities(exported.predict(TEXTS), expected, 1e-4)
        got_tags, got_scores = exported.tag(documents)  # every word, not only the few entities of a 2-step model
        assert got_tags == tags
        assert [s for doc in got_scores for s in doc] == pytest.approx([s for doc in scores for s in doc], abs=1e-4)
