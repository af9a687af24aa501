"""Cross-split checks and the report of bad rows."""

from __future__ import annotations

from pathlib import Path

from tuneforge.data.readers import Example, Problem, read_examples
from tuneforge.data.validation import MAX_SHOWN, check_unseen_labels, format_problems, summarize_skipped

_HINT = "Fix these rows, or set data.on_bad_rows: skip to train on the good rows only."


def _problems(count: int, kind: str = "empty_text") -> list[Problem]:
    return [Problem("data/train.csv", f"line {n}", kind, "empty text in column 'text'") for n in range(2, count + 2)]


def test_unseen_labels_are_reported_per_row() -> None:
    train = [Example("a", "pos", "train.csv:2"), Example("b", "neg", "train.csv:3")]
    test = [Example("c", "pos", "test.csv:2"), Example("d", "meh", "test.csv:3"), Example("e", "meh", "test.csv:4")]
    problems = check_unseen_labels(_known(train), test, "test", "test.csv")
    assert [str(p) for p in problems] == [
        "test.csv, line 3: label 'meh' in the test split never appears in the training split",
        "test.csv, line 4: label 'meh' in the test split never appears in the training split",
    ]
    assert {p.kind for p in problems} == {"unseen_label"}


def test_unseen_labels_multi_label_and_parquet_rows() -> None:
    train = [Example("a", ["x", "y"], "t.parquet:row 1")]
    validation = [Example("b", ["x", "z", "w"], "v.parquet:row 7"), Example("c", ["y"], "v.parquet:row 8")]
    problems = check_unseen_labels(_known(train), validation, "validation", "v.parquet")
    assert [(p.location, p.message.split(" in ")[0]) for p in problems] == [
        ("row 7", "label 'z'"),
        ("row 7", "label 'w'"),
    ]
    assert problems[0].file == "v.parquet"


def test_unseen_labels_in_a_split_carved_from_the_training_file() -> None:
    train = [Example("a", "pos", "data/all.csv:2")]
    validation = [Example("b", "neg", "data/all.csv:9")]
    problems = check_unseen_labels(_known(train), validation, "validation", "data/all.csv")
    assert str(problems[0]).startswith("data/all.csv, line 9: label 'neg' in the validation split")


def test_no_unseen_labels() -> None:
    train = [Example("a", "pos", "t.csv:2")]
    assert check_unseen_labels(_known(train), [Example("b", "pos", "v.csv:2")], "validation", "v.csv") == []
    assert check_unseen_labels(_known(train), [], "test", "t.csv") == []


def test_format_problems_shows_first_twenty_and_counts_the_rest() -> None:
    report = format_problems(_problems(37), 1204).splitlines()
    assert report[0] == "Found 37 problems in 1,204 rows:"
    assert report[1] == "  data/train.csv, line 2: empty text in column 'text'"
    assert report[MAX_SHOWN] == "  data/train.csv, line 21: empty text in column 'text'"
    assert report[MAX_SHOWN + 1] == "  ... and 17 more"
    assert report[-1] == _HINT
    assert len(report) == MAX_SHOWN + 3


def test_format_problems_exactly_twenty_has_no_more_line() -> None:
    report = format_problems(_problems(MAX_SHOWN), 50)
    assert "more" not in report
    assert len(report.splitlines()) == MAX_SHOWN + 2


def test_format_problems_singular_and_whole_file_problem() -> None:
    report = format_problems([Problem("a.jsonl", None, "bad_json", "broken")], 1)
    assert report.splitlines() == ["Found 1 problem in 1 row:", "  a.jsonl: broken", _HINT]


def test_format_problems_empty() -> None:
    assert format_problems([], 5) == "No problems found in 5 rows."


def test_format_problems_from_a_real_file(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "".join(f",pos\nok {n},\n" for n in range(15)))
    result = read_examples(path, "text", "label")
    report = format_problems(result.problems, result.total_rows)
    assert report.splitlines()[0] == "Found 30 problems in 30 rows:"
    assert f"  {path}, line 2: empty text in column 'text'" in report
    assert f"  {path}, line 3: label is empty in column 'label'" in report
    assert "  ... and 10 more" in report


def test_summarize_skipped_counts_rows_per_kind() -> None:
    problems = [
        *_problems(3),
        Problem("a.csv", "line 9", "missing_label", "label is empty in column 'label'"),
        Problem("a.csv", "line 9", "not_utf8", "bytes that are not UTF-8 in column 'text'"),
        Problem("a.csv", "line 10", "not_utf8", "bytes that are not UTF-8 in column 'text'"),
        Problem("a.csv", "line 10", "not_utf8", "bytes that are not UTF-8 in column 'label'"),  # same row again
        Problem("a.csv", "line 11", "missing_label", "label is missing (null) in column 'label'"),
        Problem("v.csv", "line 2", "unseen_label", "label 'x' ..."),
        Problem("v.csv", "line 2", "something_new", "..."),
    ]
    assert summarize_skipped(problems) == {
        "empty text": 3,
        "missing label": 2,
        "not UTF-8": 2,
        "label not in training split": 1,
        "something new": 1,
    }
    assert list(summarize_skipped(problems))[0] == "empty text"  # most frequent first
    assert summarize_skipped([]) == {}


def _known(train: list[Example]) -> set[str]:
    return {label for example in train for label in example.labels}
