import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tuneforge.evaluation.metrics import (
    classification_metrics,
    format_metrics_table,
    label_distribution,
    multilabel_metrics,
    tune_thresholds,
)

# 8 examples, 6 correct. Label 3 ("absent") never occurs on either side.
Y_TRUE = [0, 0, 0, 1, 1, 1, 2, 2]
Y_PRED = [0, 0, 1, 1, 1, 1, 2, 0]
NAMES = ["neg", "pos", "neutral", "absent"]


@pytest.fixture
def single() -> dict:
    return classification_metrics(Y_TRUE, Y_PRED, NAMES)


def test_single_label_headline_numbers_match_hand_computation(single):
    assert single["accuracy"] == pytest.approx(0.75)
    assert single["num_examples"] == 8
    # Per-class F1: neg 2/3, pos 6/7, neutral 2/3; macro over the labels that occur.
    assert single["macro_f1"] == pytest.approx(46 / 63)
    assert single["weighted_f1"] == pytest.approx(31 / 42)
    assert single["macro_f1"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro"))


def test_single_label_per_class_values(single):
    per_class = single["per_class"]
    assert list(per_class) == NAMES
    assert per_class["neg"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert per_class["pos"] == pytest.approx({"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "support": 3})
    assert per_class["neutral"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert per_class["absent"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_confusion_matrix_covers_absent_labels(single):
    assert single["confusion_matrix"] == [[2, 1, 0, 0], [0, 3, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert single["labels"] == NAMES


def test_single_label_metrics_are_plain_json(single):
    restored = json.loads(json.dumps(single))
    assert restored == single
    assert type(single["accuracy"]) is float
    assert type(single["per_class"]["neg"]["support"]) is int
    assert type(single["confusion_matrix"][0][0]) is int


def test_single_label_accepts_numpy_input():
    result = classification_metrics(np.array(Y_TRUE), np.array(Y_PRED), NAMES)
    assert result["accuracy"] == pytest.approx(0.75)
    json.dumps(result)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [([0, 1], [0], "items"), ([], [], "zero examples"), ([0, 4], [0, 1], "outside")],
)
def test_single_label_rejects_bad_input(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, y_pred, NAMES)


ML_TRUE = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
ML_PRED = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]])


def test_multilabel_metrics_small_case():
    result = multilabel_metrics(ML_TRUE, ML_PRED, ["a", "b", "c"])
    assert result["subset_accuracy"] == pytest.approx(0.5)
    assert result["accuracy"] == result["subset_accuracy"]
    assert result["hamming_loss"] == pytest.approx(2 / 12)
    assert result["micro_precision"] == pytest.approx(1.0)
    assert result["micro_recall"] == pytest.approx(4 / 6)
    assert result["micro_f1"] == pytest.approx(0.8)
    assert result["macro_f1"] == pytest.approx(7 / 9)
    assert result["weighted_f1"] == pytest.approx(7 / 9)  # equal supports
    assert result["num_examples"] == 4
    assert result["per_class"]["b"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert result["labels"] == ["a", "b", "c"]
    assert json.loads(json.dumps(result)) == result


def test_multilabel_shares_key_names_with_single_label(single):
    result = multilabel_metrics(ML_TRUE, ML_PRED, ["a", "b", "c"])
    for key in ("accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall", "num_examples"):
        assert key in result and key in single


def test_multilabel_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        multilabel_metrics(ML_TRUE, ML_PRED[:, :2], ["a", "b", "c"])
    with pytest.raises(ValueError, match="label names"):
        multilabel_metrics(ML_TRUE, ML_PRED, ["a", "b"])


def test_tune_thresholds_separates_a_skewed_label():
    # Label 0: the model is under-confident, positives score 0.2-0.3, negatives 0.0-0.1.
    # Label 1: well separated around 0.5, so every threshold in 0.15..0.90 is perfect.
    # Label 2: no positives at all.
    y_true = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0]])
    probs = np.array(
        [[0.30, 0.9, 0.7], [0.25, 0.95, 0.2], [0.20, 0.1, 0.9], [0.10, 0.05, 0.1], [0.0, 0.1, 0.3], [0.05, 0.9, 0.6]]
    )
    thresholds = tune_thresholds(y_true, probs)
    assert thresholds[0] == pytest.approx(0.2)  # 0.15 and 0.20 both separate; 0.20 is closer to 0.5
    assert thresholds[1] == pytest.approx(0.5)  # tie broken towards 0.5
    assert thresholds[2] == 0.5
    assert all(type(t) is float for t in thresholds)

    f1_default = f1_score(y_true[:, 0], probs[:, 0] >= 0.5, zero_division=0)
    f1_tuned = f1_score(y_true[:, 0], probs[:, 0] >= thresholds[0], zero_division=0)
    assert f1_default == 0.0
    assert f1_tuned == 1.0


def test_tune_thresholds_custom_grid_and_1d_input():
    y_true = np.array([1, 1, 0, 0])
    probs = np.array([0.8, 0.7, 0.65, 0.1])
    assert tune_thresholds(y_true, probs, grid=[0.3, 0.6, 0.7]) == [0.7]


def test_label_distribution_counts_and_order():
    distribution = label_distribution(
        {
            "train": ["b", "a", "b", ["c", "b"], ["a", "a"]],
            "validation": ["c", "d", ["a", "c"]],
        }
    )
    assert distribution == {
        "train": {"b": 3, "a": 2, "c": 1, "d": 0},
        "validation": {"b": 0, "a": 1, "c": 2, "d": 1},
    }
    # Same label order in every split, most frequent in train first.
    assert list(distribution["train"]) == list(distribution["validation"]) == ["b", "a", "c", "d"]


def test_label_distribution_empty():
    assert label_distribution({}) == {}
    assert label_distribution({"train": []}) == {"train": {}}


def test_format_metrics_table_single_label(single):
    text = format_metrics_table(single)
    assert "accuracy" in text and "0.7500" in text
    assert "macro F1" in text and f"{46 / 63:.4f}" in text
    assert "weighted F1" in text
    pos_line = next(line for line in text.splitlines() if line.startswith("pos "))
    assert pos_line.split() == ["pos", "0.750", "1.000", "0.857", "3"]


def test_format_metrics_table_multilabel():
    text = format_metrics_table(multilabel_metrics(ML_TRUE, ML_PRED, ["a", "b", "c"]))
    assert "subset accuracy" in text and "0.5000" in text
    assert "micro F1" in text and "0.8000" in text
    assert "hamming loss" in text
    assert any(line.split()[0] == "c" for line in text.splitlines() if line.strip())
