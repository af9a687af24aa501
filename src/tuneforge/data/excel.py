"""Excel workbooks (.xlsx, .xlsm), read and written with openpyxl, so nobody has to export a CSV first.

Reading: one sheet (``data.sheet`` / ``--sheet``, by name or 1-based number; the first by default). The first
non-empty row is the header; rows keep their Excel numbers, so a message says "reviews.xlsx, sheet 'Sheet1',
row 7", the row Excel shows. Every cell becomes text as a person reads it: text cells exactly as typed (IDs
keep their leading zeros), whole numbers without ".0" (a label 1 is "1"), other numbers to Excel's 15
significant digits, dates as ISO dates, TRUE/FALSE. Formulas give the value Excel saved with them; a formula
without a saved value, or an error value (#N/A, #DIV/0!), is a row problem naming the cell.

Writing: :func:`write_workbook` writes one sheet of text and numbers, never formulas (a review that starts
with "=" stays text); :func:`check_cells` refuses, before any work, what a workbook cannot hold.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError

XLS_MAGIC = b"\xd0\xcf\x11\xe0"  # OLE2: Excel 97-2003 workbooks, and password-protected .xlsx files
ZIP_MAGIC = b"PK\x03\x04"
MAX_CELL_CHARS = 32_767  # Excel's own limit
MAX_ROWS = 1_048_576
_ZERO_PADDED = re.compile(r"0+")  # a number format like "00000": IDs shown with their leading zeros
# Control characters XML 1.0 cannot hold, so neither can a workbook (openpyxl refuses them).
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


@dataclass
class Sheet:
    """One sheet as rows of text: ``rows`` holds (Excel row number, values, problems) per data row; an empty
    cell is "", a cell with a problem (an error value, a formula without a value) keeps what it holds."""

    name: str
    columns: list[str]
    rows: list[tuple[int, dict[str, str], list[tuple[str, str]]]]


def read_sheet(path: Path, sheet: str | int | None, wanted: tuple[str, ...] | None, limit: int | None) -> Sheet:
    """Read one sheet of a workbook.

    Args:
        path: The .xlsx/.xlsm file.
        sheet: Sheet name or 1-based number (a string of digits counts as a number unless a sheet has that
            name); None for the first sheet.
        wanted: The columns whose cells are checked for errors and unsaved formulas (None: all).
        limit: Stop after this many data rows (a preview).

    Raises:
        DataError: An old .xls or encrypted file, a file that is not a workbook, an unknown sheet.
    """
    workbook = _open(path, formulas=False)
    try:
        worksheet = _pick(workbook, sheet, path)
        name, index = worksheet.title, workbook.worksheets.index(worksheet)
        columns, rows, unsaved = _rows(worksheet, wanted, limit)
    finally:
        workbook.close()
    if columns is None:
        raise DataError(f"{path}: sheet {name!r} is empty")
    if unsaved:  # only then is the second, formula-text reading needed
        _explain_formulas(path, index, columns, rows, unsaved)
    return Sheet(name, columns, rows)


def _open(path: Path, formulas: bool):
    import zipfile

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    _check_magic(path)
    try:
        # data_only: a formula cell gives the value Excel saved with it (its "cached value")
        return load_workbook(path, read_only=True, data_only=not formulas)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, TypeError) as err:
        raise DataError(f"{path} is a zip file but not an Excel workbook ({err}); save it from Excel as "
                        "'Excel Workbook (.xlsx)'") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err})") from None


def _check_magic(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err})") from None
    if head.startswith(XLS_MAGIC):
        raise DataError(f"{path} is an Excel 97-2003 workbook (.xls) or a password-protected workbook, which "
                        "tuneforge cannot read: open it in Excel, remove any password, and save it as "
                        "'Excel Workbook (.xlsx)' or 'CSV UTF-8'")
    if not head.startswith(ZIP_MAGIC):
        hint = "it looks like a text file: name it .csv/.tsv or set data.format" if _looks_textual(head) else \
            "it is neither an .xlsx workbook nor a zip file"
        raise DataError(f"{path} is not an Excel workbook ({hint})")


def _looks_textual(head: bytes) -> bool:
    return bool(head) and all(byte >= 0x20 or byte in b"\t\r\n" for byte in head)


def _pick(workbook, sheet: str | int | None, path: Path):
    """The worksheet ``sheet`` names; an unknown one lists the sheets there are."""
    sheets = workbook.worksheets  # chart sheets are left out: they hold no rows
    names = [worksheet.title for worksheet in sheets]
    listed = ", ".join(repr(name) for name in names)
    if not sheets:
        raise DataError(f"{path}: the workbook has no worksheets")
    if sheet is None:
        return sheets[0]
    if isinstance(sheet, str) and sheet in names:
        return sheets[names.index(sheet)]
    if isinstance(sheet, int) or str(sheet).strip().isdigit():
        number = int(sheet)
        if 1 <= number <= len(sheets) and not isinstance(sheet, bool):
            return sheets[number - 1]
        raise DataError(f"{path}: there is no sheet number {number}; the workbook has {len(sheets)} "
                        f"sheet(s): {listed}. Set data.sheet / --sheet to a name or a number from 1")
    close = difflib.get_close_matches(str(sheet).strip().lower(), [name.lower() for name in names], n=1)
    guess = f" Did you mean {names[[n.lower() for n in names].index(close[0])]!r}?" if close else ""
    raise DataError(f"{path}: no sheet named {sheet!r}.{guess} Its sheets: {listed}. Set data.sheet / --sheet to "
                    "one of them (or its number, from 1)")


def _rows(worksheet, wanted: tuple[str, ...] | None, limit: int | None):
    """Header, data rows, and the (row, column) cells left empty that a formula might explain."""
    worksheet.reset_dimensions()  # some writers store wrong sheet dimensions; read every row there is
    columns: list[str] | None = None
    rows: list = []
    unsaved: list[tuple[int, int]] = []
    for number, cells in enumerate(worksheet.iter_rows(), start=1):  # iter_rows yields every row from 1
        if not any(_has_value(cell.value) for cell in cells):
            continue  # empty rows (and trailing ones) carry no data
        if columns is None:
            columns = _header(cells)
            checked = [i for i, column in enumerate(columns) if wanted is None or column in wanted]
            continue
        values, problems = _row_values(cells, columns, checked, number)
        unsaved += [(number, i) for i in checked if values[columns[i]] == "" and not problems]
        rows.append((number, values, problems))
        if limit is not None and len(rows) >= limit:
            break
    return columns, rows, unsaved


def _has_value(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _header(cells) -> list[str]:
    """Column names from the header row: blank names are named by their column letter, trailing blanks dropped."""
    from openpyxl.utils import get_column_letter

    names = [cell_text(cell.value, None) for cell in cells]
    while names and not (names[-1] or "").strip():
        names.pop()
    return [name if name and name.strip() else f"column {get_column_letter(i + 1)}" for i, name in enumerate(names)]


def _row_values(cells, columns: list[str], checked: list[int], number: int):
    from openpyxl.utils import get_column_letter

    values: dict[str, str] = dict.fromkeys(columns, "")  # an empty cell reads as a CSV's empty field
    problems: list[tuple[str, str]] = []
    for index, cell in enumerate(cells):
        if index >= len(columns):
            if _has_value(cell.value):
                problems.append(("field_count", f"cell {get_column_letter(index + 1)}{number} holds a value but "
                                                "its column has no header; name the column or clear the cell"))
            continue
        if cell.data_type == "e" and index in checked:  # #N/A, #DIV/0!, #REF!...: the row problem says it all
            problems.append(("excel_error", f"cell {get_column_letter(index + 1)}{number} in column "
                                            f"{columns[index]!r} holds the Excel error {cell.value}; fix it in Excel"))
        values[columns[index]] = cell_text(cell.value, getattr(cell, "number_format", None)) or ""
    return values, problems


def cell_text(value: Any, number_format: str | None) -> str | None:
    """A cell's value as the text a person reads in it (see the module docstring); None for an empty cell."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        text = str(int(value))
        if number_format and _ZERO_PADDED.fullmatch(number_format):
            text = text.zfill(len(number_format))
        return text
    if isinstance(value, float):
        return f"{value:.15g}"  # Excel keeps 15 significant digits: 0.1 + 0.2 reads 0.3, as Excel shows
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _explain_formulas(path: Path, index: int, columns: list[str], rows: list, unsaved: list[tuple[int, int]]) -> None:
    """Name the empty cells that hold a formula Excel never calculated (files written by scripts)."""
    from openpyxl.utils import get_column_letter

    wanted = {}
    for number, column in unsaved:
        wanted.setdefault(number, []).append(column)
    last = max(wanted)
    formulas = {}
    workbook = _open(path, formulas=True)
    try:
        worksheet = workbook.worksheets[index]
        worksheet.reset_dimensions()
        for number, cells in enumerate(worksheet.iter_rows(max_row=last), start=1):
            for column in wanted.get(number, ()):
                if column < len(cells) and cells[column].data_type == "f":
                    formulas[(number, column)] = cells[column].value
    finally:
        workbook.close()
    for number, values, problems in rows:
        for column in wanted.get(number, ()):
            if (number, column) in formulas:
                values[columns[column]] = formulas[(number, column)]  # the row problem says it all
                problems.append(("formula_no_value", f"cell {get_column_letter(column + 1)}{number} in column "
                                 f"{columns[column]!r} holds the formula {formulas[(number, column)]} with no saved "
                                 "value; open the file in Excel and save it (Excel then stores the value)"))


# --------------------------------------------------------------------------- writing


def check_cells(rows: list[list[Any]], out: Path) -> None:
    """Refuse, before any work, rows a workbook cannot hold (control characters, over 32,767 characters)."""
    if len(rows) >= MAX_ROWS:
        raise DataError(f"{out}: {len(rows):,} rows do not fit in an Excel sheet ({MAX_ROWS - 1:,} at most); "
                        "write CSV instead")
    for number, row in enumerate(rows, start=2):  # the row Excel will show: the header is row 1
        for value in row:
            if not isinstance(value, str):
                continue
            if len(value) > MAX_CELL_CHARS:
                raise DataError(f"{out}: row {number} would hold {len(value):,} characters in one cell; Excel cells "
                                f"hold at most {MAX_CELL_CHARS:,}. Write CSV instead (--out {out.with_suffix('.csv')})")
            bad = _ILLEGAL.search(value)
            if bad:
                raise DataError(f"{out}: row {number} holds the control character U+{ord(bad.group()):04X}, which "
                                f"an Excel workbook cannot store. Write CSV instead (--out {out.with_suffix('.csv')})")


def write_workbook(path: Path, header: list[str], rows: list[list[Any]], title: str = "predictions") -> None:
    """One sheet: the header, then the rows; strings stay strings even when they start with "="."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title)
    sheet.append([_literal(sheet, value) for value in header])
    for row in rows:
        sheet.append([_literal(sheet, value) for value in row])
    workbook.save(path)


def _literal(sheet, value: Any):
    """A cell that holds ``value`` as written: openpyxl would store "=good value" as a formula."""
    if isinstance(value, str) and value.startswith("="):
        from openpyxl.cell import WriteOnlyCell

        cell = WriteOnlyCell(sheet, value)
        cell.data_type = "s"
        return cell
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
