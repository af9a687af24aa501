"""Ensembles: `tuneforge train CONFIG --seeds N` trains N real (tiny) runs on one split and combines them; the
ensemble folder then predicts, evaluates, exports and teaches like a run, and wrong members are refused."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import tuneforge
from tuneforge.cli import main
from tuneforge.config import load_config
from tuneforge.data.splits import load_splits
from tuneforge.errors import ConfigError, RunError
from tuneforge.experiments.ensemble import build_ensemble
from tuneforge.serving.models import inspect
from tuneforge.tasks.classification import LabelSpace, loss_from_probs, score
from tuneforge.tasks.ensemble import EnsembleClassifier, combine

pytestmark = pytest.mark.recipe

CONFIG = """task: text_classification
name: ens
seed: 7
model: {name: MODEL}
method: {name: full}
data: {dataset: null, train_file: TRAIN, max_length: 32, max_examples: 200}
train: {epochs: 1, max_steps: 10, batch_size: 16, lr: 1.0e-3, log_every: 5}
output: {dir: RUNS, progress: false, tensorboard: false}
"""


def cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, shared_rt_csv, tiny_bert) -> dict:
    """`tuneforge train CONFIG --seeds 2`: two runs (seeds 7 and 8, split seed 7) and their ensemble. The tiny BERT
    (2 layers, MiniLM's tokenizer) keeps the file within a minute on one core; minilm-l6 takes twice that."""
    folder = tmp_path_factory.mktemp("ensembles")
    config = folder / "ens.yaml"
    config.write_text(CONFIG.replace("TRAIN", str(shared_rt_csv)).replace("RUNS", str(folder / "runs"))
                      .replace("MODEL", str(tiny_bert)))
    code, out, err = cli("train", config, "--seeds", 2)
    assert code == 0, err[-2000:]
    runs = sorted((folder / "runs").glob("ens-seed*"))
    (ensemble,) = (folder / "runs").glob("ens-ensemble-*")
    return {"config": config, "runs": runs, "ensemble": ensemble, "out": out, "folder": folder}


def meta_of(folder: Path) -> dict:
    path = folder / "model" / "tuneforge.json"
    return json.loads((path if path.is_file() else folder / "tuneforge.json").read_text())


def member_copy(run: Path, where: Path) -> Path:
    return Path(shutil.copytree(run, where, ignore=shutil.ignore_patterns("checkpoints")))


def test_seeds_train_runs_on_one_split_then_their_ensemble(seeds):
    runs, ensemble = seeds["runs"], seeds["ensemble"]
    configs = [load_config(run / "config.yaml") for run in runs]
    assert [c.seed for c in configs] == [7, 8] and [c.data.split_seed for c in configs] == [7, 7]
    for name in ("model/tuneforge.json", "metrics.json", "report.md", "config.yaml", "confusion_matrix.png"):
        assert (ensemble / name).is_file(), name
    spec = meta_of(ensemble)["ensemble"]
    assert spec["combine"] == "fitted" and not any(Path(m).is_absolute() for m in spec["members"])
    assert [(ensemble / "model" / m).resolve() for m in spec["members"]] == [r.resolve() for r in runs]
    for run in runs:  # the printed table and the report put each member beside the ensemble
        assert run.name in seeds["out"] and run.name in (ensemble / "report.md").read_text()
    assert "| ensemble |" in seeds["out"] and f"tuneforge predict {ensemble}" in seeds["out"]


def test_fitted_weights_never_lose_to_equal_ones_on_validation(seeds, tmp_path):
    equal = build_ensemble(seeds["runs"], tmp_path / "equal", "equal")
    fitted = json.loads((seeds["ensemble"] / "metrics.json").read_text())
    assert equal.metrics["ensemble"]["weights"] == [0.5, 0.5]
    assert sum(fitted["ensemble"]["weights"]) == pytest.approx(1.0)
    assert fitted["validation"]["loss"] <= equal.metrics["validation"]["loss"] + 1e-9
    assert meta_of(tmp_path / "equal")["ensemble"]["combine"] == "mean"


def test_metrics_are_the_members_probabilities_combined_with_the_stored_weights(seeds):
    ensemble = seeds["ensemble"]
    metrics, weights = json.loads((ensemble / "metrics.json").read_text()), meta_of(ensemble)["ensemble"]["weights"]
    config = load_config(seeds["runs"][0] / "config.yaml")
    splits = load_splits(config.data, config.seed)
    members = [tuneforge.load(run) for run in seeds["runs"]]
    labels = LabelSpace(members[0].meta["labels"], False)
    for split in ("validation", "test"):
        rows = getattr(splits, split)
        texts, targets = [r.text for r in rows], torch.tensor([labels.names.index(r.label) for r in rows])
        probs = combine([m.predict_proba(texts) for m in members], weights)
        assert score(probs, targets, labels, None)["accuracy"] == pytest.approx(metrics[split]["accuracy"])
        assert loss_from_probs(probs, targets, labels) == pytest.approx(metrics[split]["loss"], abs=1e-5)
        assert np.allclose(tuneforge.load(ensemble).predict_proba(texts), probs, atol=1e-5)


def test_predict_and_load_like_a_run(seeds):
    ensemble = seeds["ensemble"]
    model = tuneforge.load(ensemble)
    assert isinstance(model, EnsembleClassifier) and model.labels.names == ["negative", "positive"]
    assert model.tokenizer is not None  # the server counts request tokens with it
    predictions = model.predict(["a gripping, beautiful film", "a dull mess"])
    assert all(p.label in model.labels.names and sum(p.probabilities.values()) == pytest.approx(1, abs=1e-4)
               for p in predictions)
    code, out, _ = cli("predict", ensemble, "a gripping, beautiful film", "a dull mess")
    assert code == 0 and [line.split("\t")[0] for line in out.strip().splitlines()] == [p.label for p in predictions]
    served = inspect("ensemble", ensemble)  # what `tuneforge serve` does before and at start-up
    served.load()
    assert (served.kind, served.labels, served.state) == ("text-classifier", ["negative", "positive"], "ready")
    assert [p.label for p in served.model.predict(["a gripping, beautiful film", "a dull mess"])] == \
        [p.label for p in predictions]


def test_eval_on_a_labelled_csv(seeds, tmp_path, rt_rows):
    data = tmp_path / "new.csv"
    rows = rt_rows[-30:]
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)
    code, out, err = cli("eval", seeds["ensemble"], "--data", data, "--out", tmp_path / "report")
    assert code == 0, err
    predicted = [p.label for p in tuneforge.load(seeds["ensemble"]).predict([r["text"] for r in rows])]
    accuracy = np.mean([p == r["label"] for p, r in zip(predicted, rows, strict=True)])
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["accuracy"] == pytest.approx(accuracy)


def test_onnx_export_round_trip_and_merged_refused(seeds, tmp_path):
    ensemble, out = seeds["ensemble"], tmp_path / "onnx"
    code, _, err = cli("export", ensemble, "--format", "onnx", "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in (out / "members").iterdir()) == ["0", "1"]
    exported, original = tuneforge.load(out), tuneforge.load(ensemble)
    assert exported.labels.names == original.labels.names and exported.weights == original.weights
    texts = ["a gripping, beautiful film", "a dull mess", "it is a film"]
    assert np.allclose(exported.predict_proba(texts), original.predict_proba(texts), atol=1e-3)
    code, out_text, _ = cli("predict", out, *texts)
    assert code == 0 and len(out_text.strip().splitlines()) == 3
    code, _, err = cli("export", ensemble, "--format", "merged", "--out", tmp_path / "merged")
    assert code == 2 and "ensemble" in err and "several models" in err and not (tmp_path / "merged").exists()


def test_members_with_other_labels_are_refused(seeds, tmp_path):
    other = member_copy(seeds["runs"][1], tmp_path / "other")
    meta = meta_of(other)
    for labels, expected in ((["positive", "negative"], "another order"), (["negative", "neutral"], "neutral")):
        (other / "model" / "tuneforge.json").write_text(json.dumps(meta | {"labels": labels}))
        with pytest.raises(ConfigError, match=expected) as error:
            build_ensemble([seeds["runs"][0], other], tmp_path / "out")
        assert str(other) in str(error.value)
    assert not (tmp_path / "out").exists()


def test_members_on_other_splits_are_refused_with_the_fix(seeds, tmp_path):
    other = member_copy(seeds["runs"][1], tmp_path / "other")
    raw = yaml.safe_load((other / "config.yaml").read_text())
    raw["data"]["split_seed"] = None  # trained on its own seed's split (8), not the first member's (7)
    (other / "config.yaml").write_text(yaml.safe_dump(raw))
    code, _, err = cli("ensemble", seeds["runs"][0], other, "--out", tmp_path / "out")
    assert code == 2 and "data.split_seed" in err and "validation split" in err


def test_a_damaged_or_moved_member_is_named(seeds, tmp_path):
    member = member_copy(seeds["runs"][1], tmp_path / "member")
    build_ensemble([seeds["runs"][0], member], tmp_path / "ensemble", "equal")
    weights = member / "model" / "model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(intact[: len(intact) // 2])
    with pytest.raises(RunError, match="member.*cannot be opened.*truncated"):
        tuneforge.load(tmp_path / "ensemble")
    weights.write_bytes(intact)
    member.rename(tmp_path / "elsewhere")
    with pytest.raises(RunError, match="member.*not there"):
        tuneforge.load(tmp_path / "ensemble")
    code, _, err = cli("predict", tmp_path / "ensemble", "a fine film")
    assert code == 2 and "member" in err


def test_compressing_an_ensemble_is_refused_before_any_folder(seeds):
    code, _, err = cli("compress", seeds["ensemble"], "--variants", "int8")
    assert code == 2 and "distil it into one model" in err
    assert not list(Path(seeds["ensemble"]).glob("compress-*"))


def test_seeds_one_and_resume_are_refused(seeds):
    for extra in (["--seeds", 1], ["--seeds", 2, "--resume"]):
        code, _, err = cli("train", seeds["config"], *extra)
        assert code == 2 and "--seeds" in err


def test_distil_the_ensemble_into_one_model(seeds):
    from tuneforge.compression.distill import distill

    with pytest.raises(ConfigError, match="ensemble"):
        distill(seeds["ensemble"], None, ["distill.hidden_weight=1.0"])
    run = distill(seeds["ensemble"], None, ["train.max_steps=3"])
    student = tuneforge.load(run.dir)
    assert student.model.config.num_hidden_layers == 1  # every other layer of the first member
    assert student.predict(["a gripping film"])[0].label in ("negative", "positive")
    assert "an ensemble of 2" in (run.dir / "report.md").read_text()


def test_members_with_other_seeds_pass_when_the_splits_come_from_files(seeds, tmp_path, rt_rows):
    files = {}
    for split, rows in (("train", rt_rows[:60]), ("validation", rt_rows[60:90]), ("test", rt_rows[90:120])):
        files[split] = tmp_path / f"{split}.csv"
        with files[split].open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)
    members = []
    for i, run in enumerate(seeds["runs"]):
        member = member_copy(run, tmp_path / f"member{i}")
        raw = yaml.safe_load((member / "config.yaml").read_text())
        raw["data"].update(split_seed=None, max_examples=None, train_file=str(files["train"]),
                           validation_file=str(files["validation"]), test_file=str(files["test"]))
        (member / "config.yaml").write_text(yaml.safe_dump(raw))
        members.append(member)
    ensemble = build_ensemble(members, tmp_path / "ensemble", "equal")  # seeds 7 and 8: the files decide the split
    assert ensemble.metrics["validation"]["num_examples"] == 30 and ensemble.metrics["test"]["num_examples"] == 30


def test_fitted_weights_favour_the_member_that_is_right():
    """Synthetic probabilities: one member knows the answers, the other guesses."""
    from tuneforge.experiments.ensemble import choose_weights

    rng = np.random.default_rng(0)
    targets = torch.tensor(rng.integers(0, 3, 200))
    right = np.full((200, 3), 0.1)
    right[np.arange(200), targets.numpy()] = 0.8
    guess = rng.dirichlet(np.ones(3), size=200)
    labels = LabelSpace(["a", "b", "c"], False)
    weights = choose_weights([guess, right], targets, labels, "fitted")
    assert sum(weights) == pytest.approx(1.0) and weights[1] > 0.9
    fitted, equal = (loss_from_probs(combine([guess, right], w), targets, labels) for w in (weights, [0.5, 0.5]))
    assert fitted < equal - 0.1
