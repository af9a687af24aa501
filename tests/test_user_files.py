"""The files users really have, through the commands they run: a GB18030 CSV and an Excel workbook predicted,
evaluated and inspected by `init` without mojibake; outputs Excel opens; --out never over an input or a run's
own files; every command of docs/data_files.md executed."""

from __future__ import annotations

import csv
import re
import shlex
import shutil
from pathlib import Path

import openpyxl
import pytest

from tests.data.test_encodings import REVIEWS, table_text
from tuneforge.cli import main
from tuneforge.config import DataConfig
from tuneforge.data.readers import read_columns, read_examples
from tuneforge.data.splits import load_splits

ROOT = Path(__file__).resolve().parents[1]
LEGACY_RUN = ROOT / "tests" / "fixtures" / "legacy_runs" / "full-run"  # a text classifier: negative / positive
DOC = ROOT / "docs" / "data_files.md"
IDS = [f"{n:03d}" for n in range(1, len(REVIEWS) + 1)]  # order IDs with leading zeros, as CRMs export them
ENGLISH = {"正面": "positive", "负面": "negative"}


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """What the doc's commands expect: runs/reviews, a GB18030 reviews.csv, a two-sheet reviews.xlsx and a
    labelled test.csv, in the working directory."""
    shutil.copytree(LEGACY_RUN, tmp_path / "runs" / "reviews")
    rows = "id,text,label\r\n" + "".join(f"{i},{t},{label}\r\n" for i, (t, label) in zip(IDS, REVIEWS, strict=True))
    (tmp_path / "reviews.csv").write_bytes(rows.encode("gb18030"))  # Excel's "CSV" on a Chinese Windows
    book = openpyxl.Workbook()
    book.active.title = "2024年第一季度"
    book.active.append(["id", "text", "label"])
    for id_, (text, label) in zip(IDS[:4], REVIEWS[:4], strict=True):
        book.active.append([id_, text, label])
    second = book.create_sheet("2024年第二季度")
    second.append(["id", "text", "label"])
    for id_, (text, label) in zip(IDS[4:], REVIEWS[4:], strict=True):
        second.append([id_, text, label])
    book.save(tmp_path / "reviews.xlsx")
    english = [(text, ENGLISH[label]) for text, label in REVIEWS]
    (tmp_path / "test.csv").write_bytes(table_text(english).encode("gbk"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_predict_on_a_gbk_file_writes_exact_chinese_that_excel_pandas_and_tuneforge_read(workdir, capsys):
    code, out, err = run(capsys, "predict", "runs/reviews", "--file", "reviews.csv", "--out", "out.csv")
    assert code == 0 and err == "read reviews.csv as GB18030 (detected)\n"
    data = (workdir / "out.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # the byte-order mark Excel needs to see UTF-8
    with (workdir / "out.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = [(i, t, lab) for i, (t, lab) in zip(IDS, REVIEWS, strict=True)]
    assert [(r["id"], r["text"], r["label"]) for r in rows] == expected
    assert {r["predicted_label"] for r in rows} <= {"negative", "positive"}
    import pandas as pd

    frame = pd.read_csv(workdir / "out.csv", dtype=str)
    assert list(frame.columns[:3]) == ["id", "text", "label"] and list(frame["text"]) == [t for t, _ in REVIEWS]
    columns, again = read_columns(workdir / "out.csv", max_rows=None)
    assert columns[0] == "id" and [row["text"] for row in again] == [t for t, _ in REVIEWS]
    assert capsys.readouterr().err == ""  # our own output is UTF-8: nothing to announce


def test_predict_writes_an_excel_workbook_when_asked(workdir, capsys):
    code, _, _ = run(capsys, "predict", "runs/reviews", "--file", "reviews.csv", "--out", "out.xlsx")
    assert code == 0
    sheet = openpyxl.load_workbook(workdir / "out.xlsx").active
    header, *rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert header == ["id", "text", "label", "predicted_label", "prob_negative", "prob_positive"]
    assert [row[:3] for row in rows] == [[i, t, lab] for i, (t, lab) in zip(IDS, REVIEWS, strict=True)]
    assert all(abs(row[4] + row[5] - 1) < 1e-5 for row in rows)  # probabilities as numbers, not text


def test_predict_reads_a_later_sheet_and_answers_in_excel(workdir, capsys):
    code, out, _ = run(capsys, "predict", "runs/reviews", "--file", "reviews.xlsx", "--sheet", "2")
    assert code == 0 and "reviews.predictions.xlsx" in out
    rows = list(openpyxl.load_workbook(workdir / "reviews.predictions.xlsx").active.iter_rows(values_only=True))
    assert [row[:2] for row in rows[1:]] == [(i, t) for i, (t, _) in zip(IDS[4:], REVIEWS[4:], strict=True)]
    code, _, err = run(capsys, "predict", "runs/reviews", "--file", "reviews.xlsx", "--sheet", "第三季度", "--out",
                       "q3.xlsx")
    assert code == 2 and "no sheet named '第三季度'" in err and "'2024年第一季度', '2024年第二季度'" in err
    assert not (workdir / "q3.xlsx").exists()


def test_predict_never_writes_over_its_input_even_with_force(workdir, capsys):
    before = (workdir / "reviews.csv").read_bytes()
    code, _, err = run(capsys, "predict", "runs/reviews", "--file", "reviews.csv", "--out", "reviews.csv", "--force")
    assert code == 2 and "is the input file" in err and err.count("\n") == 1
    assert (workdir / "reviews.csv").read_bytes() == before and not list(workdir.glob("*.partial"))


def test_eval_out_over_the_input_or_the_run_is_refused_and_nothing_is_written(workdir, capsys):
    before = snapshot(workdir)
    for out, expected in (("test.csv", "is the data file you evaluate on"), ("reviews.csv", "is an existing file"),
                          ("runs/reviews", "is a run's own folder"), ("runs/reviews/model", "is a run's own folder")):
        code, _, err = run(capsys, "eval", "runs/reviews", "--data", "test.csv", "--out", out, "--force")
        assert code == 2 and expected in err and err.count("\n") == 1, err
    assert snapshot(workdir) == before  # the run's report.md, metrics.json and plots untouched, no eval folder


def test_eval_on_gbk_data_reads_every_row_and_the_report_names_the_encoding(workdir, capsys):
    code, out, err = run(capsys, "eval", "runs/reviews", "--data", "test.csv", "--out", "eval-test")
    assert code == 0 and "accuracy" in out and "read test.csv as GB18030 (detected)" in err
    report = (workdir / "eval-test" / "report.md").read_text(encoding="utf-8")
    assert "8 rows evaluated from test.csv." in report and "Read test.csv as GB18030 (detected)." in report


def test_init_on_a_gbk_file_finds_the_chinese_labels(workdir, capsys):
    code, out, err = run(capsys, "init", "--data", "reviews.csv")
    assert code == 0 and "read reviews.csv as GB18030 (detected)" in err
    assert "# Labels found: 正面 (4), 负面 (4)" in out and "\ufffd" not in out and "label_column: label" in out


def test_a_two_megabyte_cell_is_one_row_problem_and_skip_keeps_the_rest(tmp_path, capsys):
    rows = REVIEWS * 3
    long_row = f"\"{'很长的评论。' * 333_334}\",正面\r\n"  # 2,000,004 characters: an export gone wrong
    text = table_text(rows[:10]) + long_row + table_text(rows[10:]).split("\r\n", 1)[1]
    path = tmp_path / "reviews.csv"
    path.write_text(text, encoding="utf-8")
    config = tmp_path / "train.yaml"
    config.write_text(f"data:\n  dataset: null\n  train_file: {path}\n", encoding="utf-8")
    code, _, err = run(capsys, "train", str(config))  # the data check runs before any model loads
    assert code == 2 and re.search(r"reviews.csv, line 12: cell in column 'text' holds 2,000,004 characters", err)
    assert "Found 1 problem in 25 rows" in err
    splits = load_splits(DataConfig(dataset=None, train_file=str(path), on_bad_rows="skip"), seed=0)
    assert splits.skipped_rows == 1 and splits.skipped == {"cell too long": 1}
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 24


def test_generate_reads_gbk_prompts(tiny_llama, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("请用一句话介绍长城。\n写一首关于春天的短诗。\n".encode("gbk"))
    out = tmp_path / "out.jsonl"
    code, _, err = run(capsys, "generate", str(tiny_llama), "--file", str(prompts), "--out", str(out),
                       "--max-new-tokens", "2")
    assert code == 0 and f"read {prompts} as GB18030 (detected)" in err
    result = read_examples(out, "prompt", None)
    assert [e.text for e in result.examples] == ["请用一句话介绍长城。", "写一首关于春天的短诗。"]


# --------------------------------------------------------------------------- docs/data_files.md, executed


def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_every_command_in_the_doc_runs(workdir, capsys):
    commands = [line for block in doc_blocks("bash") for line in block.splitlines() if line.startswith("tuneforge ")]
    assert len(commands) >= 6
    printed = ""
    for command in commands:
        code, out, err = run(capsys, *shlex.split(command)[1:])
        assert code == 0, f"{command}: {err}"
        printed += out + err
    for line in doc_blocks("text")[0].splitlines():  # the console output the doc shows
        assert line in printed
    assert "正面" in (workdir / "reviews.yaml").read_text(encoding="utf-8")
    assert (workdir / "predictions.xlsx").is_file() and (workdir / "q2.csv").is_file()
    assert (workdir / "eval-test" / "report.md").is_file()


def test_the_error_the_doc_shows_is_the_real_one(workdir, capsys):
    shown = " ".join(doc_blocks("text")[1].split())
    code, _, err = run(capsys, "predict", "runs/reviews", "--file", "reviews.csv", "--encoding", "utf-8")
    assert code == 2 and " ".join(err.split()) == shown

