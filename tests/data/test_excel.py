"""Excel workbooks read directly: the sheet asked for, values as Excel shows them (formulas' saved values, IDs
with their leading zeros, 1 not 1.0), Excel row numbers in every message, clear words for .xls and non-workbooks."""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest

from tests.data.test_encodings import REVIEWS
from tuneforge.data.excel import check_cells, write_workbook
from tuneforge.data.readers import read_columns, read_examples
from tuneforge.errors import DataError


def workbook(path: Path, sheets: dict[str, list[list]]) -> Path:
    """A workbook with one sheet per entry, rows appended from row 1."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def save_formula_results(path: Path, results: dict[str, str]) -> None:
    """Store the value Excel would have saved with each formula cell ({"C2": "正面"}): openpyxl writes formulas
    without values, as any script does, until Excel opens and saves the file."""
    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    xml = parts["xl/worksheets/sheet1.xml"].decode()
    for cell, value in results.items():
        xml = re.sub(rf'<c r="{cell}"><f>(.*?)</f><v\s*/>', rf'<c r="{cell}" t="str"><f>\1</f><v>{value}</v>', xml)
    parts["xl/worksheets/sheet1.xml"] = xml.encode()
    with zipfile.ZipFile(path, "w") as target:
        for name, data in parts.items():
            target.writestr(name, data)


def test_reviews_sheet_reads_like_a_csv(tmp_path):
    path = workbook(tmp_path / "reviews.xlsx", {"Sheet1": [["text", "label"], *map(list, REVIEWS)]})
    result = read_examples(path, "text", "label")
    assert [(e.text, e.label) for e in result.examples] == REVIEWS
    assert result.examples[0].source == f"{path}:sheet 'Sheet1', row 2"
    assert result.encoding is None and result.encoding_note is None  # Excel stores Unicode: nothing to detect


def test_formulas_read_as_their_saved_values_and_unsaved_ones_are_named(tmp_path):
    rows = [["text", "score", "label"]] + [[text, 5, '=IF(B2>3,"正面","负面")'] for text, _ in REVIEWS[:3]]
    path = workbook(tmp_path / "reviews.xlsx", {"评论": rows})
    save_formula_results(path, {"C2": "正面", "C3": "负面"})  # C4: a formula Excel never calculated
    result = read_examples(path, "text", "label")
    assert [(e.text, e.label) for e in result.examples] == [(REVIEWS[0][0], "正面"), (REVIEWS[1][0], "负面")]
    messages = [str(problem) for problem in result.problems if problem.kind == "formula_no_value"]
    assert messages == [f"{path}, sheet '评论', row 4: cell C4 in column 'label' holds the formula "
                        '=IF(B2>3,"正面","负面") with no saved value; open the file in Excel and save it (Excel then '
                        "stores the value)"]


def test_ids_keep_leading_zeros_and_numbers_read_as_excel_shows_them(tmp_path):
    path = workbook(tmp_path / "orders.xlsx", {"Sheet1": [
        ["id", "text", "label", "price", "shipped", "checked"],
        ["000123", REVIEWS[0][0], 1, 19.9, dt.datetime(2024, 5, 1), True],  # id typed as text
        [7, REVIEWS[1][0], 0.0, 0.1 + 0.2, dt.datetime(2024, 5, 2, 14, 30), False],
    ]})
    book = openpyxl.load_workbook(path)
    book.active["A3"].number_format = "000000"  # a number shown zero-padded, as order IDs often are
    book.save(path)
    columns, rows = read_columns(path)
    assert columns == ["id", "text", "label", "price", "shipped", "checked"]
    assert rows == [
        {"id": "000123", "text": REVIEWS[0][0], "label": "1", "price": "19.9", "shipped": "2024-05-01",
         "checked": "TRUE"},
        {"id": "000007", "text": REVIEWS[1][0], "label": "0", "price": "0.3", "shipped": "2024-05-02 14:30:00",
         "checked": "FALSE"},
    ]
    assert [e.label for e in read_examples(path, "text", "label").examples] == ["1", "0"]


@pytest.mark.parametrize("sheet", ["2024年第二季度", 2, "2"])
def test_a_later_sheet_by_name_or_number(tmp_path, sheet):
    path = workbook(tmp_path / "reviews.xlsx", {
        "说明": [["这个工作表只有说明文字"]],
        "2024年第二季度": [["text", "label"], *map(list, REVIEWS[:4])],
    })
    result = read_examples(path, "text", "label", sheet=sheet)
    assert [(e.text, e.label) for e in result.examples] == REVIEWS[:4]


def test_a_sheet_for_a_file_that_is_not_a_workbook_is_refused_not_ignored(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n很好,正面\n", encoding="utf-8")
    with pytest.raises(DataError, match="reviews.csv: data.sheet / --sheet \\(2\\) picks a sheet of an Excel workbook, "
                                        "but this is a CSV file"):
        read_examples(path, "text", "label", sheet=2)


def test_unknown_sheet_lists_the_sheets(tmp_path):
    path = workbook(tmp_path / "reviews.xlsx", {"Reviews": [["text"]], "Labels": [["label"]]})
    with pytest.raises(DataError, match=r"no sheet named 'reveiws'. Did you mean 'Reviews'\? Its sheets: 'Reviews', "
                                        r"'Labels'. Set data.sheet / --sheet"):
        read_examples(path, "text", None, sheet="reveiws")
    with pytest.raises(DataError, match="there is no sheet number 3; the workbook has 2 sheet"):
        read_examples(path, "text", None, sheet=3)


def test_problems_name_the_sheet_and_the_excel_row(tmp_path):
    rows = [["text", "label"], *map(list, REVIEWS[:3]), [], [], [REVIEWS[3][0], None], list(REVIEWS[4]),
            [REVIEWS[5][0], "#N/A"]]
    path = workbook(tmp_path / "reviews.xlsx", {"Sheet1": rows + [[], [None, None]]})  # empty trailing rows
    result = read_examples(path, "text", "label")
    assert result.total_rows == 6  # blank rows skipped, not counted
    assert [str(problem) for problem in result.problems] == [
        f"{path}, sheet 'Sheet1', row 7: label is empty in column 'label'",
        f"{path}, sheet 'Sheet1', row 9: cell B9 in column 'label' holds the Excel error #N/A; fix it in Excel",
    ]


def test_value_beyond_the_header_is_a_row_problem_and_trailing_blank_columns_are_ignored(tmp_path):
    path = workbook(tmp_path / "reviews.xlsx", {"Sheet1": [
        ["text", "label", None, None], [*REVIEWS[0], None, None], [*REVIEWS[1], None, "备注"]]})
    columns, _ = read_columns(path)
    assert columns == ["text", "label"]
    result = read_examples(path, "text", "label")
    assert [str(p) for p in result.problems] == [
        f"{path}, sheet 'Sheet1', row 3: cell D3 holds a value but its column has no header; name the column or "
        "clear the cell"]


def test_xls_and_files_that_are_not_workbooks(tmp_path):
    old = tmp_path / "reviews.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    with pytest.raises(DataError, match="reviews.xls is an Excel 97-2003 workbook .* save it as 'Excel Workbook"):
        read_examples(old, "text", "label")
    renamed = tmp_path / "renamed.xlsx"  # an .xls saved under the new suffix, or a password-protected workbook
    renamed.write_bytes(old.read_bytes())
    with pytest.raises(DataError, match="renamed.xlsx is an Excel 97-2003 workbook .* or a password-protected"):
        read_examples(renamed, "text", "label")
    archive = tmp_path / "photos.xlsx"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("photo.txt", "not a workbook")
    with pytest.raises(DataError, match="photos.xlsx is a zip file but not an Excel workbook"):
        read_examples(archive, "text", "label")
    text = tmp_path / "text.xlsx"
    text.write_text("text,label\n很好,正面\n", encoding="utf-8")
    with pytest.raises(DataError, match="text.xlsx is not an Excel workbook \\(it looks like a text file"):
        read_examples(text, "text", "label")
    csv_named = tmp_path / "reviews.csv"  # a workbook behind a .csv name
    workbook(csv_named, {"Sheet1": [["text"]]})
    with pytest.raises(DataError, match="reviews.csv is not a valid CSV file \\(it looks like an Excel workbook"):
        read_examples(csv_named, "text", "label")


def test_written_workbook_keeps_text_that_starts_with_equals_as_text(tmp_path):
    path = tmp_path / "out.xlsx"
    write_workbook(path, ["id", "text", "prob"], [["007", "=好评=", 0.25], ["008", REVIEWS[0][0], 1.0]])
    rows = [[cell.value for cell in row] for row in openpyxl.load_workbook(path).active.iter_rows()]
    assert rows == [["id", "text", "prob"], ["007", "=好评=", 0.25], ["008", REVIEWS[0][0], 1]]
    assert read_columns(path)[1][0]["text"] == "=好评="


def test_cells_a_workbook_cannot_hold_are_refused_before_writing(tmp_path):
    out = tmp_path / "out.xlsx"
    with pytest.raises(DataError, match="out.xlsx: row 3 holds the control character U\\+000B.*--out .*out.csv"):
        check_cells([["好评"], ["物流\x0b很快"]], out)
    with pytest.raises(DataError, match="row 2 would hold 40,000 characters in one cell"):
        check_cells([["字" * 40_000]], out)
    assert not out.exists()
