from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from tuneforge.evaluation.plots import plot_confusion_matrix, plot_label_distribution, plot_training_curves


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.mode in {"RGB", "RGBA"}
        assert image.width > 100 and image.height > 100
    # Figures must be closed, or a long run leaks memory plot by plot.
    assert plt.get_fignums() == []


def test_confusion_matrix_two_classes(tmp_path):
    out = plot_confusion_matrix([[50, 2], [7, 1]], ["negative", "positive"], tmp_path / "nested" / "cm.png")
    assert out == tmp_path / "nested" / "cm.png"
    assert_png(out)


def test_confusion_matrix_many_classes_with_long_names_and_empty_rows(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 20, size=(25, 25))
    matrix[3] = 0  # a class with no true examples must not divide by zero
    names = [f"category number {i} | $special$" for i in range(25)]
    out = plot_confusion_matrix(matrix.tolist(), names, str(tmp_path / "cm25.png"))
    assert isinstance(out, Path)
    assert_png(out)


def test_confusion_matrix_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        plot_confusion_matrix([[1, 2], [3, 4]], ["a", "b", "c"], tmp_path / "bad.png")


HISTORY = [
    {"step": 10, "epoch": 0.1, "train_loss": 0.69, "lr": 1e-4},
    {"step": 20, "epoch": 0.2, "train_loss": 0.61, "lr": 1e-4},
    {"step": 50, "epoch": 0.5, "eval_loss": 0.5, "eval_accuracy": 0.8, "eval_macro_f1": 0.7},
    {"step": 60, "epoch": 0.6, "train_loss": 0.45, "lr": 9e-5},
    {"step": 100, "epoch": 1.0, "eval_loss": 0.4, "eval_accuracy": 0.85, "eval_macro_f1": 0.8},
]


def test_training_curves_with_eval(tmp_path):
    assert_png(plot_training_curves(HISTORY, tmp_path / "curves.png"))
    assert_png(plot_training_curves(HISTORY, tmp_path / "curves_f1.png", metric="macro_f1"))


def test_training_curves_without_eval_records(tmp_path):
    train_only = [record for record in HISTORY if "train_loss" in record]
    assert_png(plot_training_curves(train_only, tmp_path / "train_only.png"))


@pytest.mark.parametrize(
    "history",
    [[{"step": 1, "train_loss": 0.7}], [{"step": 5, "eval_loss": 0.3, "eval_accuracy": 0.9}], []],
    ids=["single-train-point", "single-eval-point", "empty"],
)
def test_training_curves_degenerate_histories(tmp_path, history):
    assert_png(plot_training_curves(history, tmp_path / "curves.png"))


def test_label_distribution_plot(tmp_path):
    distribution = {
        "train": {"billing": 120, "technical issue": 80, "other": 5},
        "validation": {"billing": 30, "technical issue": 20, "other": 1},
        "test": {"billing": 31, "technical issue": 19, "other": 2},
    }
    assert_png(plot_label_distribution(distribution, tmp_path / "dist" / "labels.png"))


def test_label_distribution_plot_many_labels_and_empty(tmp_path):
    many = {"train": {f"label_{i}": 100 - i for i in range(30)}, "validation": {f"label_{i}": 10 for i in range(30)}}
    assert_png(plot_label_distribution(many, tmp_path / "many.png"))
    assert_png(plot_label_distribution({}, tmp_path / "empty.png"))
