from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from tuneforge.evaluation import plots
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


# --------------------------------------------------------------------------- Chinese, Japanese and Korean labels

REVIEW_CLASSES = ["正面", "负面", "中性"]  # the sentiment classes of zh-reviews / zh-news-sentiment
NEEDS_CJK_FONT = pytest.mark.skipif(len(plots.font_chain()) == 1, reason="no CJK font installed: apt-get install "
                                    "fonts-wqy-microhei (make install does it where it may)")


def _grid_images() -> list:
    return [np.full((28, 28), shade, dtype=np.uint8) for shade in (30, 120, 220)]


# One call per public plot function, each with Chinese text wherever the function draws names.
CHINESE_PLOTS = {
    "plot_confusion_matrix": lambda path: plots.plot_confusion_matrix([[41, 3, 6], [5, 37, 8], [9, 7, 34]],
                                                                      REVIEW_CLASSES, path),
    "plot_per_class_accuracy": lambda path: plots.plot_per_class_accuracy({"正面": 0.82, "负面": 0.74, "中性": 0.68},
                                                                          path),
    "plot_label_distribution": lambda path: plots.plot_label_distribution(
        {"train": {"正面": 120, "负面": 80, "中性": 40}, "validation": {"正面": 15, "负面": 10, "中性": 5}}, path),
    "plot_image_grid": lambda path: plots.plot_image_grid(
        _grid_images(),
        ["true: 正面 / pred: 负面 0.97", "true: 中性 / pred: 正面 0.91", "true: 한국어 / pred: あ 0.88"],
        path, title="最有把握的错误"),
    "plot_training_curves": lambda path: plots.plot_training_curves(HISTORY, path),
}


def test_every_plot_function_is_drawn_with_chinese_text_below():
    public = {name for name in dir(plots) if name.startswith("plot_") and callable(getattr(plots, name))}
    assert public == set(CHINESE_PLOTS)


@NEEDS_CJK_FONT
@pytest.mark.parametrize("name", sorted(CHINESE_PLOTS))
def test_chinese_labels_render_without_missing_glyphs(tmp_path, capsys, monkeypatch, name):
    import warnings

    monkeypatch.setattr(plots, "_REPORTED", set())  # a warning given earlier in this process must not hide one now
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = CHINESE_PLOTS[name](tmp_path / f"{name}.png")
    glyph_warnings = [str(w.message) for w in caught if "Glyph" in str(w.message) or "missing from" in str(w.message)]
    assert glyph_warnings == []
    assert "no installed font" not in capsys.readouterr().err
    assert_png(out)
    assert out.stat().st_size > 5_000  # a drawn chart, not an empty canvas


@NEEDS_CJK_FONT
def test_cjk_characters_come_from_a_cjk_font_and_latin_keeps_dejavu():
    assert plots.font_chain()[0] == "DejaVu Sans"
    for char in "正负あ한":
        assert plots.font_for(char) in plots.CJK_FAMILIES, char
    assert plots.font_for("R") == "DejaVu Sans"


@NEEDS_CJK_FONT
def test_the_glyphs_drawn_are_chinese_not_empty_boxes(tmp_path, monkeypatch, capsys):
    with_cjk = np.asarray(Image.open(CHINESE_PLOTS["plot_per_class_accuracy"](tmp_path / "cjk.png")))
    monkeypatch.setattr(plots, "font_chain", lambda: ("DejaVu Sans",))
    monkeypatch.setattr(plots, "_REPORTED", set())
    boxes = np.asarray(Image.open(CHINESE_PLOTS["plot_per_class_accuracy"](tmp_path / "boxes.png")))
    assert with_cjk.shape == boxes.shape and (with_cjk != boxes).any()


def test_without_a_cjk_font_one_warning_names_the_fix(tmp_path, monkeypatch, capsys):
    import warnings

    monkeypatch.setattr(plots, "font_chain", lambda: ("DejaVu Sans",))  # a machine with no CJK font
    monkeypatch.setattr(plots, "_REPORTED", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("plot_confusion_matrix", "plot_per_class_accuracy", "plot_label_distribution"):
            assert_png(CHINESE_PLOTS[name](tmp_path / f"{name}.png"))
    assert [str(w.message) for w in caught if "Glyph" in str(w.message)] == []  # not a dozen of them
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1
    assert "'正' (U+6B63)" in lines[0] and "apt-get install fonts-wqy-microhei" in lines[0]


def test_image_grid_keeps_the_grey_level_of_a_uniform_image(tmp_path):
    pale = np.full((28, 28), 220, dtype=np.uint8)  # a blank, pale scan: autoscaling used to draw it black
    out = plots.plot_image_grid([pale], ["true: 正面 / pred: 负面 0.97"], tmp_path / "grid.png", columns=1)
    with Image.open(out) as image:
        grey = np.asarray(image.convert("L"))
    centre = grey[grey.shape[0] // 2, grey.shape[1] // 2]
    assert 200 <= centre <= 235
