"""From config to validated splits: seeded, stratified, user splits respected, bad rows stop or skip."""

import csv
from collections import Counter

import pytest

from tuneforge.config import DataConfig
from tuneforge.data.splits import load_splits
from tuneforge.errors import DataError


def write_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def rows(n=100):
    return [(f"sentence number {i}", "pos" if i % 4 else "neg") for i in range(n)]


def test_single_file_split_is_seeded_and_stratified(tmp_path):
    path = write_csv(tmp_path / "d.csv", rows(200))
    config = DataConfig(dataset=None, train_file=str(path))
    a, b = load_splits(config, seed=7), load_splits(config, seed=7)
    assert [e.text for e in a.test] == [e.text for e in b.test]
    assert (len(a.train), len(a.validation), len(a.test)) == (160, 20, 20)
    assert Counter(e.label for e in a.test) == {"pos": 15, "neg": 5}  # same 3:1 share as the file
    other = load_splits(config, seed=8)
    assert [e.text for e in other.test] != [e.text for e in a.test]
    assert not {e.text for e in a.train} & {e.text for e in a.test}


def test_user_given_splits_are_respected(tmp_path):
    train = write_csv(tmp_path / "train.csv", rows(40))
    val = write_csv(tmp_path / "val.csv", rows(8))
    test = write_csv(tmp_path / "test.csv", rows(12))
    splits = load_splits(DataConfig(dataset=None, train_file=str(train), validation_file=str(val),
                                    test_file=str(test)), seed=0)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (40, 8, 12)


def test_bad_rows_stop_with_a_report(tmp_path):
    data = rows(50) + [("   ", "pos"), ("fine text", "")]
    path = write_csv(tmp_path / "d.csv", data)
    with pytest.raises(DataError) as error:
        load_splits(DataConfig(dataset=None, train_file=str(path)), seed=0)
    message = str(error.value)
    assert "d.csv, line 52" in message and "empty text" in message
    assert "d.csv, line 53" in message and "label" in message
    assert "on_bad_rows: skip" in message


def test_bad_rows_skipped_and_counted(tmp_path):
    path = write_csv(tmp_path / "d.csv", rows(50) + [("   ", "pos"), ("fine text", "")])
    splits = load_splits(DataConfig(dataset=None, train_file=str(path), on_bad_rows="skip"), seed=0)
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 50
    assert sum(splits.skipped.values()) == 2


def test_label_only_in_test_is_reported(tmp_path):
    train = write_csv(tmp_path / "train.csv", rows(40))
    test = write_csv(tmp_path / "test.csv", rows(5) + [("a new kind of row", "neutral")])
    with pytest.raises(DataError, match="neutral"):
        load_splits(DataConfig(dataset=None, train_file=str(train), test_file=str(test)), seed=0)


def test_single_label_class_is_refused(tmp_path):
    path = write_csv(tmp_path / "d.csv", [(f"text {i}", "pos") for i in range(30)])
    with pytest.raises(DataError, match="at least 2"):
        load_splits(DataConfig(dataset=None, train_file=str(path)), seed=0)


def test_builtin_dataset_split_matches_target(rt_rows):
    splits = load_splits(DataConfig(), seed=42)
    total = len(splits.train) + len(splits.validation) + len(splits.test)
    assert total == len(rt_rows) == 10568
    assert abs(len(splits.test) - 1057) <= 2
    assert splits.labels() == ["negative", "positive"]


def test_max_examples_samples_every_split_before_label_checks(tmp_path):
    train = write_csv(tmp_path / "train.csv", sorted(rows(200), key=lambda r: r[1]))  # all 'neg' rows first
    val = write_csv(tmp_path / "val.csv", rows(40))
    splits = load_splits(DataConfig(dataset=None, train_file=str(train), validation_file=str(val), max_examples=20),
                         seed=0)
    assert len(splits.train) == 20 and len(splits.validation) == 20
    assert {e.label for e in splits.train} == {"neg", "pos"}  # a seeded sample, not the head of the file
