"""Text files in the encodings people really have (Excel's Chinese exports, Big5, UTF-16, Windows-1252) read
exactly, with the encoding named; files that do not decode are one clear error, never mojibake or lost rows."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tuneforge.config import DataConfig
from tuneforge.data.encodings import decode, display_name
from tuneforge.data.lm import load_documents
from tuneforge.data.readers import read_columns, read_examples
from tuneforge.data.splits import load_splits
from tuneforge.errors import DataError

# Product reviews as shoppers write them, with the labels a Chinese team uses.
REVIEWS = [
    ("这款手机的屏幕非常清晰，电池也很耐用，我很满意。", "正面"),
    ("物流太慢了，等了一个星期才到，包装还破了。", "负面"),
    ("客服态度很好，耐心地解答了我的问题。", "正面"),
    ("味道一般，价格偏贵，不会再买了。", "负面"),
    ("衣服面料很舒服，尺码也标准，推荐购买。", "正面"),
    ("用了两天就坏了，申请退货还被拒绝，非常失望。", "负面"),
    ("发货速度快，包装完好，好评！", "正面"),
    ("耳机音质很差，杂音特别大，戴久了耳朵疼。", "负面"),
]
TRADITIONAL = [  # Taiwan and Hong Kong: Big5
    ("這家餐廳的牛肉麵湯頭濃郁，份量也很足，下次還會再來。", "正面"),
    ("服務生態度很差，上菜又慢，不推薦。", "負面"),
    ("東西收到了，跟圖片一樣，品質不錯。", "正面"),
    ("螢幕有刮痕，客服也不回覆，很失望。", "負面"),
]
FRENCH = [
    ("Un film très réussi, les acteurs sont excellents.", "positif"),
    ("Ça ne vaut pas le déplacement ; décevant.", "négatif"),
    ("Livraison rapide, produit conforme à la description.", "positif"),
    ("Qualité médiocre, l'emballage était abîmé.", "négatif"),
]


def table_text(rows: list[tuple[str, str]], delimiter: str = ",") -> str:
    """A CSV (or TSV) of text,label rows, quoted as Excel quotes them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    return buffer.getvalue()


def write_table(path: Path, rows: list[tuple[str, str]], encoding: str, delimiter: str = ",") -> Path:
    path.write_bytes(table_text(rows, delimiter).encode(encoding))
    return path


@pytest.mark.parametrize(("encoding", "rows", "named"), [
    ("gbk", REVIEWS, "GB18030"),  # what Excel's "CSV (Comma delimited)" writes on a Chinese Windows
    ("gb18030", REVIEWS + [("发货速度快，包装完好，好评！👍", "正面")], "GB18030"),  # an emoji GBK cannot hold
    ("big5", TRADITIONAL, "Big5"),
])
def test_chinese_legacy_encodings_are_detected_and_read_exactly(tmp_path, capsys, encoding, rows, named):
    path = write_table(tmp_path / "reviews.csv", rows, encoding)
    result = read_examples(path, "text", "label")
    assert [(e.text, e.label) for e in result.examples] == rows
    assert result.problems == [] and result.total_rows == len(rows)
    assert result.encoding_note == f"read {path} as {named} (detected)"
    assert capsys.readouterr().err.strip() == f"read {path} as {named} (detected)"
    columns, preview = read_columns(path)  # what `tuneforge init` looks at
    assert columns == ["text", "label"] and {row["label"] for row in preview} == {label for _, label in rows}


def test_utf16_with_bom_from_excel_unicode_text_is_read(tmp_path, capsys):
    # Excel's "Unicode Text (*.txt)" export: UTF-16 LE with a byte-order mark, tab-separated
    path = write_table(tmp_path / "reviews.tsv", REVIEWS, "utf-16", delimiter="\t")
    result = read_examples(path, "text", "label")
    assert [(e.text, e.label) for e in result.examples] == REVIEWS
    assert (result.encoding, result.encoding_note) == ("utf-16", f"read {path} as UTF-16 (byte-order mark)")


def test_utf16_without_bom_is_detected(tmp_path):
    path = write_table(tmp_path / "reviews.csv", REVIEWS[:3], "utf-16-le")
    result = read_examples(path, "text", "label")
    assert [(e.text, e.label) for e in result.examples] == REVIEWS[:3]
    assert result.encoding == "utf-16-le"


def test_utf8_with_and_without_bom_reads_silently(tmp_path, capsys):
    for encoding in ("utf-8", "utf-8-sig"):
        path = write_table(tmp_path / f"{encoding}.csv", REVIEWS, encoding)
        result = read_examples(path, "text", "label")
        assert [(e.text, e.label) for e in result.examples] == REVIEWS and result.encoding_note is None
    assert capsys.readouterr().err == ""  # UTF-8 is the normal case: nothing to say


def test_western_windows_file_reads_as_windows_1252(tmp_path):
    path = write_table(tmp_path / "avis.csv", FRENCH, "cp1252")
    result = read_examples(path, "text", "label")
    assert [(e.text, e.label) for e in result.examples] == FRENCH
    assert result.encoding_note == f"read {path} as Windows-1252 (detected)"


def test_accents_that_appear_only_deep_in_a_file_are_still_read_right(tmp_path):
    # 150 KB of plain ASCII first: detection must look where the accented bytes are, not at the file's start
    rows = [(f"Order {n} arrived on time, works as described.", "gut") for n in range(4000)]
    rows.append(("Größe passt nicht, Rücksendung läuft.", "schlecht"))
    path = write_table(tmp_path / "bewertungen.csv", rows, "cp1252")
    result = read_examples(path, "text", "label")
    assert result.examples[-1].text == "Größe passt nicht, Rücksendung läuft." and len(result.examples) == 4001


def test_gb18030_jsonl_is_read_exactly(tmp_path):
    lines = "".join(f'{{"text": "{text}", "label": "{label}"}}\n' for text, label in REVIEWS)
    path = tmp_path / "reviews.jsonl"
    path.write_bytes(lines.encode("gb18030"))
    assert [(e.text, e.label) for e in read_examples(path, "text", "label").examples] == REVIEWS


def test_encoding_set_by_the_user_is_used_and_named(tmp_path):
    path = write_table(tmp_path / "reviews.csv", REVIEWS, "gbk")
    result = read_examples(path, "text", "label", encoding="GBK")
    assert [(e.text, e.label) for e in result.examples] == REVIEWS
    assert result.encoding_note == f"read {path} as GBK (as set)"


def test_forced_utf8_on_a_gbk_file_is_one_error_naming_file_encoding_and_fix(tmp_path):
    rows = REVIEWS * 12  # 96 rows: one message for the file, not one per row
    path = write_table(tmp_path / "reviews.csv", rows, "gbk")
    with pytest.raises(DataError) as error:
        read_examples(path, "text", "label", encoding="utf-8")
    message = str(error.value)
    assert message.startswith(f"{path}: cannot read the file as UTF-8 (as set): byte 0xD5 at offset 12 (line 2)")
    assert "CSV UTF-8" in message and "data.encoding / --encoding" in message and "gb18030" in message
    assert message.count("\n") == 0


def test_set_encoding_that_contradicts_the_bytes_is_refused_not_turned_into_mojibake(tmp_path):
    utf8 = write_table(tmp_path / "utf8.csv", REVIEWS, "utf-8")
    with pytest.raises(DataError, match="utf8.csv is valid UTF-8, but data.encoding / --encoding says GB18030"):
        read_examples(utf8, "text", "label", encoding="gb18030")
    bom = write_table(tmp_path / "bom.csv", REVIEWS, "utf-8-sig")
    with pytest.raises(DataError, match="bom.csv starts with a UTF-8 byte-order mark, but .* says Big5"):
        read_examples(bom, "text", "label", encoding="big5")
    with pytest.raises(DataError, match="'gbk2' is not an encoding Python knows; use e.g. utf-8, gb18030"):
        read_examples(utf8, "text", "label", encoding="gbk2")


def test_mixed_encodings_are_refused_naming_both_lines(tmp_path):
    path = tmp_path / "avis.csv"
    path.write_bytes("text,label\nUn café parfait,positif\n".encode() + "Trop salé,négatif\n".encode("cp1252"))
    with pytest.raises(DataError, match="avis.csv mixes encodings: line 2 is UTF-8, line 3 is not"):
        read_examples(path, "text", "label")


def test_undetectable_bytes_are_one_error(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label\n" + bytes(range(0x80, 0x100)) * 3 + b",x\n")
    with pytest.raises(DataError, match="the file is not UTF-8 .*line 2.* cannot be detected. Nothing was read"):
        read_examples(path, "text", "label")


def test_gbk_training_file_keeps_every_row_and_both_labels(tmp_path):
    # Before: "158 problems in 90 rows", and on_bad_rows: skip trained on 22 of the 90 rows.
    path = write_table(tmp_path / "reviews.csv", REVIEWS * 12, "gbk")
    splits = load_splits(DataConfig(dataset=None, train_file=str(path)), seed=0)
    assert splits.total_rows == 96 and splits.skipped_rows == 0
    assert splits.labels() == ["正面", "负面"]
    assert {e.text for e in splits.train} == {text for text, _ in REVIEWS}


def test_language_model_text_files_are_decoded_by_the_same_policy(tmp_path, capsys):
    story = "从前有座山，山里有座庙，庙里有个老和尚在给小和尚讲故事。\n" * 20
    path = tmp_path / "story.txt"
    path.write_bytes(story.encode("gb18030"))
    documents = load_documents(DataConfig(dataset=None, train_file=str(path)), seed=0)
    assert documents.train[0].text == story
    assert f"read {path} as GB18030 (detected)" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"story.txt: cannot read the file as UTF-8 \(as set\)"):
        load_documents(DataConfig(dataset=None, train_file=str(path), encoding="utf-8"), seed=0)


def test_binary_and_damaged_files_are_file_errors():
    with pytest.raises(DataError, match="x.csv is not a text file \\(it contains NUL bytes"):
        decode(b"text,label\n\x00\x01\x02\x03garbage", "x.csv")
    damaged = table_text(REVIEWS).encode() + b"\xff bad,x\r\n"
    with pytest.raises(DataError, match=r"UTF-8 except for byte 0xFF at offset \d+ \(line 10\)"):
        decode(damaged, "x.csv")


def test_display_names():
    assert [display_name(name) for name in ("gb18030", "cp936", "latin1", "utf_16_le", "big5")] == [
        "GB18030", "GBK", "Latin-1", "UTF-16 LE", "Big5"]
