"""Image classification end to end on the real EfficientNet-Lite0 and real MNIST digits (mnist-5k)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import tuneforge
from tests.test_cli import run_cli
from tuneforge.config import TopKConfig, config_from_dict
from tuneforge.data.images import read_idx
from tuneforge.errors import ConfigError
from tuneforge.methods import Target, apply_method
from tuneforge.models.vision import build_classifier
from tuneforge.tasks.image_classification.recipe import load_image_splits


def image_config(tmp_path, method: dict, max_examples: int = 1200, **sections) -> dict:
    config = {
        "task": "image_classification",
        "name": "digits",
        "model": {"name": "efficientnet-lite0"},
        "method": method,
        "data": {"dataset": "mnist-5k", "max_examples": max_examples},
        "image": {"size": 32, "resize": 32, "random_resized_crop": False, "hflip": False},
        "train": {"epochs": 2, "batch_size": 32, "lr": 2e-3, "log_every": 5},
        "eval": {"batch_size": 200},
        "output": {"dir": str(tmp_path / "runs"), "progress": False, "tensorboard": False},
    }
    for key, value in sections.items():
        config.setdefault(key, {}).update(value)
    return config


@pytest.fixture(scope="module")
def digits():
    from tuneforge.assets.datasets import dataset_folder

    folder = dataset_folder("mnist-5k")
    return read_idx(folder / "mnist-5k-images-idx3-ubyte.gz", 3), read_idx(folder / "mnist-5k-labels-idx1-ubyte.gz", 1)


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory, digits):
    """100 real digits as PNG files in class folders (a run may have trained on some: accuracy checks are lenient)."""
    pixels, labels = digits
    root = tmp_path_factory.mktemp("digit-pngs")
    for i in range(0, 5000, 50):  # every 50th: the file is sorted by digit, so this spans all ten
        folder = root / str(labels[i])
        folder.mkdir(exist_ok=True)
        Image.fromarray(pixels[i]).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("full")
    return tuneforge.train(image_config(tmp_path, {"name": "full"}))


@pytest.mark.recipe
def test_full_fine_tuning_learns_digits_with_a_report_of_pictures(full_run):
    test = full_run.metrics["test"]
    assert test["accuracy"] > 0.85, test["accuracy"]  # chance is 0.10
    report = full_run.report.read_text()
    for piece in ("confidently_wrong.png", "per_class_accuracy.png", "confusion_matrix.png", "## Per-class accuracy",
                  "tuneforge predict"):
        assert piece in report
    assert Image.open(full_run.dir / "confidently_wrong.png").size[0] > 400
    assert (full_run.model_dir / "model.safetensors").is_file()


@pytest.mark.recipe
def test_saved_model_predicts_identically_in_a_fresh_process(full_run, digit_folder, tmp_path):
    files = sorted(str(p) for p in digit_folder.rglob("*.png"))[:24]
    here = tuneforge.load(full_run.dir).predict_proba(files)
    script = ("import json, sys, numpy as np, tuneforge; files = json.loads(sys.argv[2]); "
              "np.save(sys.argv[3], tuneforge.load(sys.argv[1]).predict_proba(files))")
    subprocess.run([sys.executable, "-c", script, str(full_run.dir), json.dumps(files), str(tmp_path / "p.npy")],
                   check=True, capture_output=True)
    there = np.load(tmp_path / "p.npy")
    assert np.allclose(here, there, atol=1e-6)
    labels = [p.split("/")[-2] for p in files]
    model = tuneforge.load(full_run.dir)
    assert np.mean([model.labels.names[i] == label for i, label in zip(here.argmax(1), labels, strict=True)]) > 0.8

    # the saved model is the one the report measured: same test accuracy, to the example
    test = load_image_splits(full_run.config).test
    predicted = [p.label for p in model.predict([e.image for e in test])]
    accuracy = np.mean([p == e.label for p, e in zip(predicted, test, strict=True)])
    assert accuracy == pytest.approx(full_run.metrics["test"]["accuracy"], abs=1e-9)


@pytest.mark.recipe
def test_cli_predicts_files_and_folders_and_evaluates_a_folder(full_run, digit_folder, tmp_path, capsys):
    one = next(digit_folder.rglob("*.png"))
    code, out, _ = run_cli(capsys, "predict", str(full_run.dir), str(one))
    assert code == 0 and out.split("\t")[2].strip() == str(one)

    out_csv = tmp_path / "preds.csv"
    code, out, _ = run_cli(capsys, "predict", str(full_run.dir), "--dir", str(digit_folder), "--out", str(out_csv))
    assert code == 0
    import csv

    rows = list(csv.DictReader(out_csv.open(encoding="utf-8-sig")))  # with a BOM, for Excel
    assert len(rows) == 100 and {"image", "predicted_label", "prob_0", "prob_9"} <= set(rows[0])
    right = sum(row["predicted_label"] == row["image"].split("/")[-2] for row in rows)
    assert right > 80

    code, out, _ = run_cli(capsys, "eval", str(full_run.dir), "--data", str(digit_folder), "--out",
                           str(tmp_path / "eval"))
    assert code == 0 and "accuracy" in out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["accuracy"] == right / 100
    assert (tmp_path / "eval" / "confidently_wrong.png").is_file()


@pytest.mark.recipe
def test_cli_names_bad_images_and_can_skip_them(full_run, digit_folder, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(next(digit_folder.rglob("*.png")).read_bytes()[:30])
    good = next(digit_folder.rglob("*.png"))
    code, _, err = run_cli(capsys, "predict", str(full_run.dir), str(good), str(broken))
    assert code == 2 and "broken.png" in err and "--on-bad-rows skip" in err
    code, out, err = run_cli(capsys, "predict", str(full_run.dir), str(good), str(broken), "--on-bad-rows", "skip")
    assert code == 0 and len(out.strip().splitlines()) == 1 and "skipped 1" in err
    code, _, err = run_cli(capsys, "predict", str(full_run.dir), str(good), "--dir", str(digit_folder))
    assert code == 2 and "exactly one of them" in err


@pytest.mark.recipe
def test_cached_feature_probe_trains_only_the_head(tmp_path):
    run = tuneforge.train(image_config(tmp_path, {"name": "freeze", "cache_features": True},
                                       train={"epochs": 8, "lr": 1e-2, "batch_size": 64}))
    assert run.metrics["test"]["accuracy"] > 0.5  # chance is 0.10; a probe of 32 px digits is honest, not great
    assert run.metrics["trainable_parameters"] == 1280 * 10 + 10
    trained = tuneforge.load(run.dir).model
    pretrained = build_classifier("efficientnet-lite0", 10, 32, 0.2)
    for name, tensor in pretrained.backbone.state_dict().items():  # weights and batch-norm statistics alike
        assert torch.equal(tensor, trained.backbone.state_dict()[name]), name


@pytest.mark.recipe
def test_lora_on_convolutions_learns_reloads_and_merges(tmp_path, digit_folder, capsys):
    run = tuneforge.train(image_config(tmp_path, {"name": "lora", "r": 8, "alpha": 16, "dropout": 0.0},
                                       train={"epochs": 2, "lr": 5e-3}))
    assert run.metrics["test"]["accuracy"] > 0.5
    assert (run.model_dir / "adapter_model.safetensors").is_file()
    model = tuneforge.load(run.dir)
    adapted = {name.split(".")[-4] for name, _ in model.model.named_parameters() if "lora_A" in name}
    assert adapted == {"_expand_conv", "_project_conv", "_conv_head"}
    files = sorted(str(p) for p in digit_folder.rglob("*.png"))[:8]
    assert np.allclose(model.predict_proba(files), tuneforge.load(run.dir).predict_proba(files), atol=1e-6)
    code, _, _ = run_cli(capsys, "export", str(run.dir), "--merge", "--out", str(tmp_path / "merged"))
    merged = tuneforge.load(tmp_path / "merged")
    assert code == 0 and not merged.meta["adapter"]
    assert np.allclose(merged.predict_proba(files), model.predict_proba(files), atol=1e-4)


def test_frozen_blocks_keep_their_batch_norm_statistics():
    model = apply_method(build_classifier("efficientnet-lite0", 3, 32, 0.2), TopKConfig(k=2),
                         Target(heads=("classifier",), task_type=None))
    trains = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("backbone._blocks.15.") for n in trains)
    assert any(n.startswith("backbone._conv_head") for n in trains)  # above the stack
    assert not any(n.startswith(("backbone._blocks.13.", "backbone._conv_stem", "backbone._bn0")) for n in trains)
    model.train()
    frozen_before = model.backbone._bn0.running_mean.clone()
    trained_before = model.backbone._blocks[15]._bn2.running_mean.clone()
    model(pixel_values=torch.randn(4, 3, 32, 32))
    assert torch.equal(model.backbone._bn0.running_mean, frozen_before)
    assert not torch.equal(model.backbone._blocks[15]._bn2.running_mean, trained_before)


def test_checkpoints_and_best_weights_keep_batch_norm_statistics():
    from tuneforge.engine.loop import _trainable_state

    model = build_classifier("efficientnet-lite0", 3, 32, 0.2)
    state = _trainable_state(model)
    assert "backbone._blocks.3._bn1.running_mean" in state and "classifier.weight" in state


def test_image_runs_refuse_what_cannot_work(tmp_path):
    with pytest.raises(ConfigError, match="not available for image_classification"):
        tuneforge.train(image_config(tmp_path, {"name": "prefix_tuning"}))
    with pytest.raises(ConfigError, match="is not an image model"):
        tuneforge.train(image_config(tmp_path, {"name": "full"}, model={"name": "minilm-l6"}))
    with pytest.raises(ConfigError, match="image.size must be between 16"):
        config_from_dict(image_config(tmp_path, {"name": "full"}, image={"size": 8}))


def test_augmented_training_is_the_same_with_data_workers(tmp_path):
    """Augmentation is seeded per (seed, epoch, image): worker processes change nothing."""
    def run(workers: int):
        config = image_config(tmp_path / str(workers), {"name": "full"}, max_examples=96,
                              image={"random_resized_crop": True, "hflip": True, "color_jitter": 0.2},
                              train={"max_steps": 3, "batch_size": 16, "num_workers": workers})
        return tuneforge.train(config).metrics["validation"]["loss"]

    assert run(0) == pytest.approx(run(2), abs=1e-6)


@pytest.mark.recipe
def test_resume_mid_epoch_reproduces_the_uninterrupted_run(tmp_path):
    """A run that stopped after step 4 of 6 (epoch 2, batch 1 of 3: mid-epoch) resumes exactly, batch-norm
    statistics, augmentation and batch order included."""
    import shutil

    from safetensors.torch import load_file

    config = image_config(tmp_path, {"name": "full"}, max_examples=48,
                          image={"random_resized_crop": True, "hflip": True, "color_jitter": 0.2},
                          train={"max_steps": 6, "batch_size": 16, "checkpoint": {"every": 1, "keep_last": 10}},
                          eval={"every": 3})
    config["deterministic"] = True
    reference = tuneforge.train(config)
    crashed = tmp_path / "crashed"  # the same run as if killed right after the step-4 checkpoint
    shutil.copytree(reference.dir, crashed, ignore=shutil.ignore_patterns("model", "step-0000000[56]"))
    resumed = tuneforge.train(config, resume=crashed / "checkpoints" / "step-00000004")
    assert resumed.dir == crashed
    before = load_file(reference.model_dir / "model.safetensors")
    after = load_file(resumed.model_dir / "model.safetensors")
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), f"{name} differs after resume"
    assert resumed.metrics["test"]["accuracy"] == reference.metrics["test"]["accuracy"]


def test_init_writes_a_valid_image_config_from_a_folder(digit_folder, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "init", "--task", "image_classification", "--data", str(digit_folder))
    assert code == 0 and "task: image_classification" in out and "about 28 px" in out
    config = config_from_dict(__import__("yaml").safe_load(out))
    assert config.image.size == 48 and config.data.train_file == str(digit_folder)
