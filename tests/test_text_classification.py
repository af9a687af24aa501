"""The text-classification recipe end to end on a tiny random BERT: files, reload, plain transformers."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import tuneforge
from tests.conftest import tiny_config
from tuneforge.config import load_config
from tuneforge.data.splits import load_splits


def test_run_directory_has_everything_a_user_opens(trained_text_run):
    names = {p.name for p in trained_text_run.dir.iterdir()}
    assert {"config.yaml", "metrics.json", "report.md", "model", "history.jsonl", "training_curves.png",
            "confusion_matrix.png", "label_distribution.png"} <= names
    metrics = json.loads((trained_text_run.dir / "metrics.json").read_text())
    assert {"accuracy", "macro_f1", "weighted_f1", "confusion_matrix", "per_class"} <= set(metrics["test"])
    assert metrics["trainable_parameters"] == metrics["total_parameters"]
    report = trained_text_run.report.read_text()
    assert "Confusion matrix" in report and "positive" in report and "negative" in report


def test_resolved_config_reruns_as_is(trained_text_run):
    config = load_config(trained_text_run.dir / "config.yaml")
    assert config.method.name == "full" and config.train.batch_size == 16


def test_reloaded_model_reproduces_the_reported_test_metrics(trained_text_run):
    config = load_config(trained_text_run.dir / "config.yaml")
    test = load_splits(config.data, config.seed).test
    model = tuneforge.load(trained_text_run.dir)
    predicted = [p.label for p in model.predict([e.text for e in test])]
    accuracy = np.mean([p == e.label for p, e in zip(predicted, test, strict=True)])
    assert accuracy == pytest.approx(trained_text_run.metrics["test"]["accuracy"], abs=1e-9)
    probabilities = model.predict(["a wonderful film"])[0].probabilities
    assert set(probabilities) == {"negative", "positive"} and sum(probabilities.values()) == pytest.approx(1)


def test_best_weights_are_the_ones_saved(tiny_bert, rt_csv, tmp_path):
    # a large learning rate makes validation accuracy jump around; the saved model must be the best one
    config = tiny_config(tiny_bert, rt_csv, tmp_path, train={"epochs": 4, "lr": 5e-3}, eval={"every": 5})
    run = tuneforge.train(config)
    evals = [r["eval_accuracy"] for r in map(json.loads, (run.dir / "history.jsonl").read_text().splitlines())
             if "eval_accuracy" in r]
    assert run.metrics["fit"]["best_validation_metric"] == max(evals)
    assert run.metrics["validation"]["accuracy"] == pytest.approx(max(evals))


def test_gradient_accumulation_steps_and_eval_points(tiny_bert, rt_csv, tmp_path):
    # 320 training rows / batch 16 = 20 batches; grad_accum 3 -> 7 optimizer steps per epoch (last one short)
    config = tiny_config(tiny_bert, rt_csv, tmp_path, train={"epochs": 2, "grad_accum": 3})
    run = tuneforge.train(config)
    history = [json.loads(line) for line in (run.dir / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history if "eval_loss" in r] == [7, 14]
    assert run.metrics["fit"]["steps"] == 14


def test_plain_transformers_loads_the_model_and_agrees(trained_text_run, rt_rows):
    texts = [r["text"] for r in rt_rows[:20]]
    folder = trained_text_run.dir / "model"
    plain = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert plain.config.id2label == {0: "negative", 1: "positive"}
    assert (folder / "model.safetensors").is_file()
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
        probs = torch.softmax(plain(**batch).logits, -1).numpy()
    np.testing.assert_allclose(probs, tuneforge.load(trained_text_run.dir).predict_proba(texts), atol=1e-5)


def test_lora_head_saved_with_adapter_and_merge_matches(trained_text_lora_run, rt_rows):
    run = trained_text_lora_run  # the tiny BERT, LoRA r=4, one epoch
    assert (run.dir / "model" / "adapter_model.safetensors").is_file()
    model = tuneforge.load(run.dir)
    # the trained head is inside the adapter folder: the reloaded model gives the reported test results
    resolved = load_config(run.dir / "config.yaml")
    test = load_splits(resolved.data, resolved.seed).test
    predicted = [p.label for p in model.predict([e.text for e in test])]
    assert np.mean([p == e.label for p, e in zip(predicted, test, strict=True)]) == pytest.approx(
        run.metrics["test"]["accuracy"], abs=1e-9)
    texts = [r["text"] for r in rt_rows[:20]]
    before = model.predict_proba(texts)
    merged = model.merged()
    tokens = model.tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        merged_probs = torch.softmax(merged(**tokens).logits, -1).numpy()
    np.testing.assert_allclose(merged_probs, before, atol=1e-5)


def test_multi_label_with_thresholds(tiny_bert, tmp_path, rt_rows):
    # real sentences, two real label dimensions: polarity and strength of the human rating
    path = tmp_path / "multi.jsonl"
    with path.open("w") as handle:
        for row in rt_rows[:300]:
            labels = [row["label"]] + (["strong"] if abs(row["rating"]) > 2 else [])
            handle.write(json.dumps({"text": row["text"], "tags": labels}) + "\n")
    config = tiny_config(tiny_bert, path, tmp_path, data={"label_column": "tags", "multi_label": True},
                         eval={"metric": "macro_f1"}, train={"class_weights": "auto"})
    run = tuneforge.train(config)
    assert {"micro_f1", "macro_f1", "subset_accuracy"} <= set(run.metrics["test"])
    model = tuneforge.load(run.dir)
    thresholds = dict(zip(model.labels.names, model.meta["thresholds"], strict=True))
    assert set(thresholds) == {"negative", "positive", "strong"}
    for prediction in model.predict([r["text"] for r in rt_rows[300:340]]):
        # a label is predicted exactly when its probability reaches its tuned threshold
        expected = [name for name, p in prediction.probabilities.items() if p >= thresholds[name]]
        assert prediction.label == expected
    assert AutoModelForSequenceClassification.from_pretrained(run.dir / "model").config.problem_type == (
        "multi_label_classification"
    )


def test_early_stopping_stops(tiny_bert, rt_csv, tmp_path):
    config = tiny_config(tiny_bert, rt_csv, tmp_path, train={"epochs": 30, "lr": 0.0},
                         eval={"every": 5, "early_stopping_patience": 2})
    run = tuneforge.train(config)
    assert run.metrics["fit"]["stopped_early"]
    assert run.metrics["fit"]["steps"] == 15  # best at the first eval, two evaluations without improvement


def test_tensorboard_events_written(tiny_bert, rt_csv, tmp_path):
    config = tiny_config(tiny_bert, rt_csv, tmp_path, output={"tensorboard": True}, train={"max_steps": 3})
    run = tuneforge.train(config)
    assert list(run.dir.rglob("events.out.tfevents.*"))
