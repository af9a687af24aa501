"""Distillation, pruning, int8 and ONNX exports, and the trade-off table, on a real MiniLM-L6 teacher
trained on real rt-sentences reviews (about a minute), plus unit checks on the tiny BERT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import tuneforge
from tests.test_cli import run_cli
from tuneforge.compression.distill import kd_loss
from tuneforge.compression.report import labelled_test_split

pytestmark = pytest.mark.recipe


def _config(root: Path, **sections) -> dict:
    config = {
        "task": "text_classification", "name": "teacher", "model": {"name": "minilm-l6"},
        "method": {"name": "lora"},
        # 1,500 training reviews; 3% each (317) for validation and test, so that the many evaluations of these
        # tests (teacher, students, every exported and pruned variant) stay cheap
        "data": {"dataset": "rt-sentences", "max_examples": 1500, "max_length": 40, "split": [0.94, 0.03, 0.03]},
        "train": {"epochs": 1, "batch_size": 32, "lr": 2e-3, "warmup_ratio": 0.0, "log_every": 10},
        "output": {"dir": str(root / "runs"), "progress": False, "tensorboard": False},
    }
    for key, value in sections.items():
        config.setdefault(key, {}).update(value)
    return config


@pytest.fixture(scope="session")
def teacher(tmp_path_factory) -> Path:
    """MiniLM-L6 + LoRA, one epoch over 1,500 real reviews: clearly above chance, as a user's run would be."""
    return tuneforge.train(_config(tmp_path_factory.mktemp("teacher"))).dir


@pytest.fixture(scope="session")
def test_texts(teacher) -> tuple[list[str], np.ndarray]:
    return labelled_test_split(teacher / "model")


@pytest.fixture(scope="session")
def reference(teacher, test_texts) -> np.ndarray:
    return tuneforge.load(teacher).predict_proba(test_texts[0])


# --------------------------------------------------------------------------- distillation


def test_kd_loss_is_zero_for_the_teacher_itself_and_positive_otherwise():
    torch.manual_seed(0)
    logits = torch.randn(16, 5) * 3
    for multi_label in (False, True):
        assert kd_loss(logits, logits.clone(), 2.0, multi_label).abs().item() < 1e-6
        assert kd_loss(logits + torch.randn(16, 5), logits, 2.0, multi_label).item() > 1e-3
    tokens = torch.randn(2 * 7, 50)  # token-level KL for language models: (tokens, vocabulary)
    assert kd_loss(tokens, tokens, 1.0).abs().item() < 1e-6


def test_kd_term_of_the_teacher_distilling_itself_is_zero(teacher, test_texts):
    """Through the real loss function: the student is the teacher (all layers kept), CE switched off."""
    from tuneforge.compression.distill import Distillation
    from tuneforge.config import load_config
    from tuneforge.data.text import PadCollator, tokenize

    model = tuneforge.load(teacher)
    config = load_config(teacher / "config.yaml", ["distill.ce_weight=0", "distill.cache_teacher_logits=false"])
    distillation = Distillation(model, teacher / "model", config.distill, kept=list(range(6)))
    student = model.merged()
    texts = test_texts[0][:16]
    ids = tokenize(texts, model.tokenizer, 40)
    loss_fn = distillation.loss(texts, student, model.tokenizer, config)
    batch = PadCollator(0)([{"input_ids": row, "index": i} for i, row in enumerate(ids)])
    batch["labels"] = torch.zeros(len(ids), dtype=torch.long)
    with torch.no_grad():
        assert loss_fn(student.eval(), batch).item() < 1e-6


def _write_csv(path: Path, rows: list[dict]) -> str:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)
    return str(path)


def test_distilled_student_beats_the_same_student_without_its_teacher(teacher, tmp_path, rt_rows):
    """Both students: 3 of the teacher's 6 layers, the same 48 labelled reviews, the same 40 steps. The distilled
    one also learns the teacher's outputs on 1,500 unlabelled reviews; the other has only the labels."""
    import random

    rows = rt_rows[:]
    random.Random(7).shuffle(rows)
    files = [f"data.train_file={_write_csv(tmp_path / 'train.csv', rows[:48])}",
             f"data.validation_file={_write_csv(tmp_path / 'validation.csv', rows[48:148])}",
             f"data.test_file={_write_csv(tmp_path / 'test.csv', rows[148:548])}", "data.dataset=null",
             "data.max_examples=null"]
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("\n".join(r["text"] for r in rows[548:2048]), encoding="utf-8")
    common = files + ["train.max_steps=40", "train.lr=1e-4", f"output.dir={tmp_path / 'runs'}",
                      "distill.keep_layers=[0,2,4]"]
    distilled = tuneforge.compression.distill.distill(
        teacher, None, common + [f"distill.unlabelled_file={unlabelled}", "distill.kd_weight=1.0",
                                 "distill.ce_weight=0.5"])
    alone = tuneforge.compression.distill.distill(teacher, None, common + ["distill.kd_weight=0",
                                                                          "distill.ce_weight=1.0"])
    with_teacher, without = distilled.metrics["test"]["accuracy"], alone.metrics["test"]["accuracy"]
    print(f"distilled {with_teacher:.4f} vs labels only {without:.4f}; "
          f"teacher {distilled.metrics['distillation']['teacher_test']['accuracy']:.4f}")
    assert with_teacher > without
    assert distilled.metrics["distillation"]["unlabelled_texts"] == 1500
    assert "Distillation" in (distilled.dir / "report.md").read_text(encoding="utf-8")
    student = json.loads((distilled.dir / "model" / "config.json").read_text(encoding="utf-8"))
    assert student["num_hidden_layers"] == 3
    assert list((teacher / "distill-cache").glob("*.safetensors")), "the teacher's logits are cached"


# --------------------------------------------------------------------------- exports


@pytest.fixture(scope="session")
def exports(teacher, tmp_path_factory) -> dict[str, Path]:
    from tuneforge.compression.export import export

    root = tmp_path_factory.mktemp("exports")
    return {fmt: export(teacher, fmt, root / fmt) for fmt in ("int8", "onnx", "onnx-int8")}


def test_onnx_fp32_matches_eager_within_1e_4(exports, test_texts, reference):
    probs = tuneforge.load(exports["onnx"]).predict_proba(test_texts[0])
    assert np.abs(probs - reference).max() < 1e-4


@pytest.mark.parametrize("fmt", ["int8", "onnx-int8"])
def test_int8_keeps_labels_and_accuracy(fmt, exports, test_texts, reference):
    """Stated tolerance: at least 95% (ONNX Runtime) or 93% (PyTorch, 7-bit activations) of test labels unchanged,
    accuracy within 2 points, probabilities within 0.5 (bench/compress.py: 97.4% / 95.0%, -0.5 / -1.6 points)."""
    texts, truth = test_texts
    probs = tuneforge.load(exports[fmt]).predict_proba(texts)
    agreement = (probs.argmax(1) == reference.argmax(1)).mean()
    accuracy, original = (probs.argmax(1) == truth).mean(), (reference.argmax(1) == truth).mean()
    print(f"{fmt}: same label {agreement:.4f}, accuracy {accuracy:.4f} vs {original:.4f}")
    assert agreement >= (0.95 if fmt == "onnx-int8" else 0.93)
    assert accuracy >= original - 0.02
    assert np.abs(probs - reference).max() < 0.5


def test_exports_are_smaller_and_self_contained(exports, teacher, tmp_path, test_texts, reference, capsys):
    onnx_size = (exports["onnx"] / "model.onnx").stat().st_size
    assert (exports["onnx-int8"] / "model.onnx").stat().st_size < 0.3 * onnx_size
    assert (exports["int8"] / "model-int8.safetensors").stat().st_size < 0.7 * onnx_size
    for fmt, folder in exports.items():
        moved = tmp_path / fmt
        shutil.copytree(folder, moved)  # nothing points back at the run
        code, out, err = run_cli(capsys, "predict", str(moved), "a gripping, funny, moving film")
        assert code == 0, err
        assert "positive" in out or "negative" in out
    import onnxruntime

    session = onnxruntime.InferenceSession(str(exports["onnx"] / "model.onnx"))
    tokenizer = tuneforge.load(teacher).tokenizer
    encoded = tokenizer(test_texts[0][:4], return_tensors="np", padding=True)
    logits = session.run(None, {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})[0]
    assert np.abs(torch.softmax(torch.from_numpy(logits), -1).numpy() - reference[:4]).max() < 1e-4


def test_server_answers_with_every_variant(exports, teacher, test_texts):
    from fastapi.testclient import TestClient

    from tuneforge.config import config_from_dict
    from tuneforge.serving.app import create_app
    from tuneforge.serving.models import inspect

    models = {name: inspect(name, folder) for name, folder in {"fp32": teacher, **exports}.items()}
    for served in models.values():
        served.load()
    texts = test_texts[0][:8]
    settings = config_from_dict({"serve": {"auth": False}}).serve
    with TestClient(create_app(models, settings, None)) as client:
        for name, folder in {"fp32": teacher, **exports}.items():
            response = client.post("/v1/classify", json={"model": name, "texts": texts})
            assert response.status_code == 200, response.text
            expected = tuneforge.load(folder).predict(texts)
            assert [r["label"] for r in response.json()["data"]] == [p.label for p in expected]


def test_export_refuses_what_it_cannot_do(teacher, exports, tmp_path, capsys):
    code, _, err = run_cli(capsys, "export", str(exports["onnx"]), "--format", "onnx")
    assert code == 2 and "fp32 text-classification" in err
    code, _, err = run_cli(capsys, "export", str(teacher), "--format", "onnx", "--out", str(exports["onnx"]))
    assert code == 2 and "--force" in err
    code, _, err = run_cli(capsys, "export", str(tmp_path / "nothing"), "--format", "int8")
    assert code == 2 and "no such run" in err
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")  # --force never deletes a folder tuneforge did not write
    code, _, err = run_cli(capsys, "export", str(teacher), "--format", "int8", "--out", str(precious), "--force")
    assert code == 2 and "never the run itself" in err and (precious / "notes.txt").is_file()
    code, _, err = run_cli(capsys, "export", str(teacher), "--format", "int8", "--out", str(teacher), "--force")
    assert code == 2 and (teacher / "model" / "tuneforge.json").is_file()
    broken = shutil.copytree(exports["onnx"], tmp_path / "broken")
    (broken / "model.onnx").write_bytes(b"not a graph")  # a corrupt file: a clear message, not a crash
    code, _, err = run_cli(capsys, "predict", str(broken), "text")
    assert code == 2 and "export it again" in err


# --------------------------------------------------------------------------- pruning


@pytest.mark.parametrize("method,amount", [("heads", 0.4), ("ffn", 0.3), ("layers", 0.34)])
def test_structured_pruning_gives_a_smaller_model_plain_transformers_loads(method, amount, teacher, tmp_path,
                                                                            test_texts, reference):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tuneforge.compression.pruning import prune

    folder = prune(teacher, method, amount, out=tmp_path / method)
    pruning = json.loads((folder / "tuneforge.json").read_text(encoding="utf-8"))["pruning"]
    assert pruning["parameters_after"] < pruning["parameters_before"]
    plain = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    assert sum(p.numel() for p in plain.parameters()) == pruning["parameters_after"]
    texts, truth = test_texts
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    encoded = tokenizer(texts[:8], return_tensors="pt", padding=True, truncation=True, max_length=40)
    with torch.no_grad():
        plain_probs = torch.softmax(plain(**encoded).logits, -1).numpy()
    ours = tuneforge.load(folder).predict_proba(texts)
    assert np.abs(plain_probs - ours[:8]).max() < 1e-4
    accuracy, original = (ours.argmax(1) == truth).mean(), (reference.argmax(1) == truth).mean()
    print(f"{method} {amount}: {pruning['summary']}; accuracy {accuracy:.4f} vs {original:.4f}")
    assert accuracy > 0.6  # pruned without recovery, still well above chance (0.5)
    if method == "heads":
        assert sum(pruning["heads_per_layer"]) == round(12 * 6 * 0.6)
        assert min(pruning["heads_per_layer"]) >= 1


def test_heads_pruned_with_recovery_is_a_run_that_exports_to_onnx(teacher, tmp_path, test_texts):
    from tuneforge.compression.export import export
    from tuneforge.compression.pruning import prune

    run = prune(teacher, "heads", 0.3, recover_epochs=1,
                overrides=["train.max_steps=10", f"output.dir={tmp_path / 'runs'}"])
    assert (run.dir / "pruning.json").is_file() and (run.dir / "report.md").is_file()
    assert (run.dir / "model" / "pruned_bert.py").is_file()
    onnx = export(run.dir, "onnx", tmp_path / "onnx")
    texts = test_texts[0][:32]
    assert np.abs(tuneforge.load(onnx).predict_proba(texts) - tuneforge.load(run.dir).predict_proba(texts)).max() < 1e-4


def test_magnitude_pruning_zeroes_weights_but_not_the_file_size(teacher, tmp_path, exports):
    from safetensors.torch import load_file

    from tuneforge.compression.pruning import compressed_size, prune

    dense = prune(teacher, "magnitude", 0.01, out=tmp_path / "dense")
    sparse = prune(teacher, "magnitude", 0.5, out=tmp_path / "sparse")
    tensors = load_file(sparse / "model.safetensors")
    linear = [t for name, t in tensors.items() if name.endswith("weight") and t.dim() == 2
              and "embeddings" not in name]
    zeros = sum(int((t == 0).sum()) for t in linear) / sum(t.numel() for t in linear)
    assert 0.49 < zeros < 0.52
    size = (sparse / "model.safetensors").stat().st_size
    assert abs(size - (dense / "model.safetensors").stat().st_size) < 1e5  # stored densely: no smaller
    assert compressed_size(sparse) < 0.9 * compressed_size(dense)  # only a compressed copy shrinks


def test_prune_refuses_bad_requests(teacher, exports, capsys):
    code, _, err = run_cli(capsys, "prune", str(teacher), "--method", "heads", "--amount", "1.5")
    assert code == 2 and "--amount" in err
    code, _, err = run_cli(capsys, "prune", str(teacher), "--method", "magnitude", "--recover-epochs", "1")
    assert code == 2 and "recovery" in err
    code, _, err = run_cli(capsys, "prune", str(exports["int8"]), "--method", "ffn")
    assert code == 2 and "fp32 text-classification" in err
    code, _, err = run_cli(capsys, "distill", str(teacher), "train.class_weights=auto")  # an override, no CONFIG
    assert code == 2 and "train.class_weights" in err


# --------------------------------------------------------------------------- the table


def test_compress_writes_one_table_for_every_variant(teacher, tmp_path, capsys, monkeypatch):
    from tuneforge.compression import report

    monkeypatch.setattr(report, "LATENCY_TEXTS", 20)  # the figures are bench/compress.py's job; here, the table
    monkeypatch.setattr(report, "THROUGHPUT_TEXTS", 64)
    out = tmp_path / "table"
    code, printed, err = run_cli(capsys, "compress", str(teacher), "--variants", "onnx-int8,magnitude", "--out",
                                 str(out))
    assert code == 0, err
    import csv

    rows = {r["variant"]: r for r in csv.DictReader((out / "compression.csv").open(encoding="utf-8"))}
    assert list(rows) == ["original", "onnx-int8", "magnitude"]
    assert float(rows["onnx-int8"]["size_mb"]) < 0.3 * float(rows["original"]["size_mb"])
    assert float(rows["magnitude"]["zipped_mb"]) < float(rows["original"]["zipped_mb"])
    for row in rows.values():
        assert 0.5 < float(row["accuracy"]) <= 1 and float(row["p50_ms"]) > 0 and float(row["batch32_per_s"]) > 0
    assert (out / "compression.png").stat().st_size > 10_000
    assert "| onnx-int8 |" in (out / "compression.md").read_text(encoding="utf-8") and "| onnx-int8 |" in printed


# --------------------------------------------------------------------------- images and causal LMs


def test_causal_lm_student_learns_from_token_level_kl(tmp_path, corpus):
    """A 4-layer copy of a SmolLM2-135M run (30 layers) recovers much of its perplexity in a few distilled steps,
    and the token-level KD term of the teacher against itself is 0."""
    from tuneforge.compression.distill import OnlineDistillation, distill
    from tuneforge.config import DistillConfig
    from tuneforge.data.lm import CausalCollator

    config = _config(tmp_path, model={"name": "smollm2-135m"}, train={"max_steps": 2, "batch_size": 8},
                     lm={"eval_blocks": 4})
    config |= {"task": "causal_lm", "name": "writer", "data": {"train_file": str(corpus), "max_length": 64}}
    teacher = tuneforge.train(config).dir
    run = distill(teacher, None, ["train.max_steps=8", "train.lr=3e-4", "train.batch_size=8",
                                  "distill.keep_layers=[0,10,20,29]", f"output.dir={tmp_path / 'students'}"])
    validation = run.metrics["validation"]
    print(f"student perplexity {validation['perplexity_before']:.1f} -> {validation['perplexity']:.1f}")
    assert validation["perplexity"] < 0.5 * validation["perplexity_before"]
    assert json.loads((run.dir / "model" / "config.json").read_text())["num_hidden_layers"] == 4
    assert tuneforge.load(run.dir).generate("The film", max_new_tokens=4)

    model = tuneforge.load(teacher)
    plain = model.merged().eval()
    loss_fn = OnlineDistillation(plain, teacher, DistillConfig(ce_weight=0.0)).token_loss(plain)
    ids = model.tokenizer(["a gripping film", "the plot"], return_tensors="pt", padding=True)["input_ids"].tolist()
    batch = CausalCollator(model.tokenizer.pad_token_id)([{"input_ids": row, "index": i} for i, row in enumerate(ids)])
    with torch.no_grad():
        assert loss_fn(plain, batch).item() < 1e-5


def test_image_classifier_distils_from_an_image_teacher(tmp_path):
    from tuneforge.compression.distill import distill

    image = {"size": 32, "resize": 32, "random_resized_crop": False, "hflip": False}
    config = _config(tmp_path, model={"name": "efficientnet-lite0"}, method={"name": "freeze"}, image=image,
                     train={"max_steps": 10, "batch_size": 32})
    config |= {"task": "image_classification", "name": "digits", "data": {"dataset": "mnist-5k", "max_examples": 300}}
    teacher = tuneforge.train(config).dir
    run = distill(teacher, None, ["method.name=freeze", "train.max_steps=5", "train.lr=2e-3",
                                  f"output.dir={tmp_path / 'students'}"])
    assert run.metrics["distillation"]["teacher"] == str(teacher / "model")
    assert "Distillation" in (run.dir / "report.md").read_text(encoding="utf-8")
    assert run.metrics["fit"]["steps"] == 5
    # the KD term of the teacher against itself is 0, and against the student it is what training reduced
    from tuneforge.compression.distill import OnlineDistillation
    from tuneforge.config import DistillConfig
    from tuneforge.tasks.image_classification.recipe import _logits

    plain = tuneforge.load(teacher).model.eval()
    loss_fn = OnlineDistillation(plain, teacher, DistillConfig(ce_weight=0.0)).classifier_loss(_logits)
    batch = {"pixel_values": torch.rand(4, 3, 32, 32), "labels": torch.zeros(4, dtype=torch.long)}
    with torch.no_grad():
        assert loss_fn(plain, batch).item() < 1e-6
        assert loss_fn(tuneforge.load(run.dir).model.eval(), batch).item() > 1e-6
