"""The file-format layer under :mod:`tuneforge.data.readers`: turn a data file into a table of raw rows.

Each format (CSV, TSV, JSON Lines, Parquet, Excel) is read into a :class:`Table` of :class:`Row` objects that
hold the raw values exactly as the file gave them, plus any problem met while parsing a row (a JSON line that
is not an object, a CSV row with too many fields, a cell of millions of characters). Turning raw values into
examples is left to the readers module. Whole-file problems (missing or binary file, bytes that do not decode,
unparsable CSV, a file that is not JSON Lines, Parquet or Excel at all) raise :class:`~tuneforge.errors.DataError`.
Text files are decoded by :mod:`tuneforge.data.encodings`; workbooks are read by :mod:`tuneforge.data.excel`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.data.encodings import Decoded, announce, decode
from tuneforge.errors import DataError

_FORMAT_NAMES = {"csv": "CSV", "tsv": "TSV", "jsonl": "JSON Lines", "parquet": "Parquet", "xlsx": "Excel"}
# Magic bytes of files people often mistake for text tables, with what to tell them.
_BINARY_HINTS = (
    (b"PAR1", "it looks like a Parquet file: name it .parquet or set data.format: parquet"),
    (b"PK\x03\x04", "it looks like an Excel workbook or a zip file: name a workbook .xlsx (or set data.format: xlsx); "
                     "unzip a zip file first"),
    (b"\xd0\xcf\x11\xe0", "it looks like an old Excel .xls workbook: open it in Excel and save it as .xlsx or "
                          "'CSV UTF-8'"),
    (b"\x1f\x8b", "it looks gzip-compressed: decompress it first"),
)
# A cell this long is nearly always an export gone wrong (a quote left open swallows the rows after it), and
# no model reads that much text as one example.
MAX_CELL_CHARS = 1_000_000
# The csv module refuses fields over 131,072 characters by failing the whole file; lift that (to the largest
# value every platform's C long holds) so that an over-long cell is one row problem instead.
_CSV_FIELD_LIMIT = 2**31 - 1


@dataclass(slots=True)
class Row:
    """One parsed row (or line) of a file, with its raw values and any parse problems."""

    number: int  # 1-based line (CSV/TSV/JSONL) or row (Parquet, Excel)
    values: dict[str, Any] | None  # None when the row could not be parsed at all
    problems: list[tuple[str, str]]  # (kind, message) found while parsing


@dataclass
class Table:
    """A file's column names and its rows."""

    columns: list[str]
    rows: Iterable[Row]  # a stream for CSV/TSV, so read it once
    unit: str  # "line", "row" or "sheet 'Sheet1', row": what Problem.location counts
    encoding: str | None = None  # the codec a text file was decoded with; None for Parquet and Excel
    encoding_note: str | None = None  # "read reviews.csv as GB18030 (detected)"; None for UTF-8


def check_file(path: Path) -> None:
    """Raise DataError unless ``path`` is an existing file (not a directory)."""
    if not path.exists():
        raise DataError(f"{path}: file not found (looked for {path.absolute()})")
    if path.is_dir():
        raise DataError(f"{path} is a directory; give the path of a data file inside it")


def read_bytes(path: Path) -> bytes:
    """A file's bytes, or a DataError saying why they cannot be read."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err})") from None


def load_table(path: Path, fmt: str, wanted: tuple[str, ...] | None, limit: int | None,
               encoding: str | None = None, sheet: str | int | None = None) -> Table:
    """Read ``path`` as ``fmt``.

    ``wanted`` narrows the Parquet columns read and the cells checked for problems (None: all), ``limit`` caps
    the good rows, ``encoding`` is the user's ``data.encoding`` for text formats (None: detected) and
    ``sheet`` the Excel sheet (None: the first).
    """
    if sheet is not None and fmt != "xlsx":  # never ignored: the user thinks this file is a workbook
        raise DataError(f"{path}: data.sheet / --sheet ({sheet!r}) picks a sheet of an Excel workbook, but this is "
                        f"a {_FORMAT_NAMES[fmt]} file; remove the setting, or give the .xlsx file")
    if fmt == "parquet":  # Parquet and Excel store Unicode: data.encoding is for the text formats only
        return _read_parquet(path, wanted, limit)
    if fmt == "xlsx":
        return _read_excel(path, sheet, wanted, limit)
    decoded = read_text(path, fmt, encoding)
    if fmt == "jsonl":
        table = _read_jsonl(str(path), decoded.text, limit)
    else:
        table = _read_delimited(str(path), decoded.text, "\t" if fmt == "tsv" else ",", wanted)
    table.encoding, table.encoding_note = decoded.encoding, decoded.note(str(path))
    return table


def read_text(path: Path, fmt: str, encoding: str | None = None) -> Decoded:
    """Decode a text table by the encoding policy of :mod:`tuneforge.data.encodings`; binary files and
    undecodable bytes are one whole-file error, so no row is ever silently dropped or turned into mojibake."""
    data = read_bytes(path)
    expected = _FORMAT_NAMES[fmt]
    for magic, hint in _BINARY_HINTS:
        if data.startswith(magic):
            raise DataError(f"{path} is not a valid {expected} file ({hint})")
    decoded = decode(data, str(path), encoding, what=f"a valid {expected} file")
    if not decoded.text.strip():
        raise DataError(f"{path}: file is empty")
    return decoded


def read_text_file(path: Path, encoding: str | None = None) -> Decoded:
    """A plain text file (``.txt`` documents or prompts) decoded by the same policy, its encoding named on the
    console when it is not UTF-8; an empty file is left to the caller."""
    check_file(path)
    decoded = decode(read_bytes(path), str(path), encoding)
    announce(decoded.note(str(path)))
    return decoded


def _read_excel(path: Path, sheet: str | int | None, wanted: tuple[str, ...] | None, limit: int | None) -> Table:
    from tuneforge.data.excel import read_sheet  # imported here so that reading CSV does not pay for openpyxl

    found = read_sheet(path, sheet, wanted, limit)
    rows = [Row(number, values, problems) for number, values, problems in found.rows]
    return Table(found.columns, rows, f"sheet {found.name!r}, row")


def _read_delimited(file: str, text: str, delimiter: str, wanted: tuple[str, ...] | None) -> Table:
    records = _records(file, text, delimiter)
    first = next(records, None)
    if first is None:
        raise DataError(f"{file}: file is empty")
    header = first[1]
    checked = [i for i, name in enumerate(header) if wanted is None or name in wanted]
    # Rows stream from the parser rather than pile up in a list: far fewer live objects for the GC to scan.
    rows = (_delimited_row(number, header, fields, delimiter, checked) for number, fields in records)
    return Table(header, rows, "line")


def _records(file: str, text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (start line, fields) of each record that has data, header included."""
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    start, end, fields = 0, 0, []
    try:
        for fields in reader:
            # line_num counts physical lines read so far, so a record starts right after the previous one.
            start, end = end + 1, reader.line_num
            if "".join(fields).strip():  # blank lines and rows of empty cells (spreadsheet exports) carry no data
                yield start, fields
    except csv.Error as err:
        raise DataError(f"{file}, line {end + 1}: cannot parse the file ({err})") from None
    _check_unclosed_quote(file, text, fields, start, end)


def _delimited_row(number: int, header: list[str], fields: list[str], delimiter: str, checked: list[int]) -> Row:
    values = dict(zip(header, fields, strict=False))  # a short row simply lacks its last columns
    problems = []
    if len(fields) > len(header):
        quote_hint = "a tab" if delimiter == "\t" else "','"
        message = f"row has {len(fields)} fields, header has {len(header)} (quote fields that contain {quote_hint})"
        problems.append(("field_count", message))
    if max(map(len, fields), default=0) > MAX_CELL_CHARS:  # one C-level pass; the details only on a hit
        problems += [cell_too_long(header[i], len(fields[i])) for i in checked
                     if i < len(fields) and len(fields[i]) > MAX_CELL_CHARS]
    return Row(number, values, problems)


def cell_too_long(column: str, length: int) -> tuple[str, str]:
    """The row problem of a cell over :data:`MAX_CELL_CHARS`."""
    return ("cell_too_long", f"cell in column {column!r} holds {length:,} characters (at most {MAX_CELL_CHARS:,}); "
            "such a cell is usually a quote left open in an export. Split the text over several rows (language "
            "models: put long documents in .txt files)")


def _check_unclosed_quote(file: str, text: str, last_fields: list[str], start: int, end: int) -> None:
    """Catch a quote that is never closed: the csv module silently reads the rest of the file as one value."""
    last = last_fields[-1] if last_fields else ""
    closed = text.rstrip().endswith('"')
    if ("\n" in last or "\r" in last) and not closed:
        raise DataError(
            f"{file}, line {start}: a quoted field starts here but is never closed, so lines {start}-{end} "
            'would be read as one value. Close the quote (write a quote inside a quoted field as "")'
        )


def _read_jsonl(file: str, text: str, limit: int | None) -> Table:
    columns: dict[str, None] = {}  # insertion-ordered union of the keys of all objects
    rows: list[Row] = []
    good = 0
    for number, line in enumerate(text.split("\n"), start=1):  # JSON strings cannot hold a raw "\n"
        if not line.strip():
            continue
        values, error = _parse_json_line(line)
        if values is None:
            rows.append(Row(number, None, [("bad_json", error)]))
            continue
        columns.update(dict.fromkeys(values))
        rows.append(Row(number, values, []))
        good += 1
        if limit is not None and good >= limit:
            break
    _check_mostly_json(file, text, rows, good)
    return Table(list(columns), rows, "line")


def _parse_json_line(line: str) -> tuple[dict[str, Any] | None, str]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        return None, f"not a JSON object ({err.msg} at column {err.colno})"
    except RecursionError:
        return None, "not a JSON object (nested too deeply)"
    if not isinstance(value, dict):
        return None, f"not a JSON object (found {type_name(value)})"
    return value, ""


def _check_mostly_json(file: str, text: str, rows: list[Row], good: int) -> None:
    """A few bad lines are row problems; a file of mostly bad lines is simply not JSON Lines."""
    bad = len(rows) - good
    if bad <= good:
        return
    if text.lstrip().startswith("["):
        reason = "it holds a JSON array; write one JSON object per line instead"
    else:
        first = next(row for row in rows if row.values is None)
        reason = f"{bad} of {len(rows)} lines are not JSON objects; line {first.number}: {first.problems[0][1]}"
    raise DataError(
        f"{file} is not a valid JSON Lines file ({reason}). "
        'Each line must hold one JSON object, like {"text": "...", "label": "..."}'
    )


def _read_parquet(path: Path, wanted: tuple[str, ...] | None, limit: int | None) -> Table:
    import pyarrow as pa  # imported here so that reading CSV does not pay for pyarrow
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        names = list(parquet.schema_arrow.names)
        if limit is not None:
            batch = next(parquet.iter_batches(batch_size=max(limit, 1)), None)
            records = batch.to_pylist() if batch is not None else []
            rows = [Row(number, values, []) for number, values in enumerate(records[:limit], start=1)]
            return Table(names, rows, "row")
        columns = names if wanted is None else [name for name in dict.fromkeys(wanted) if name in names]
        table = parquet.read(columns=columns)
        values = [_column_values(table.column(name), pa) for name in columns]
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(f"{path} is not a valid Parquet file ({err})") from None
    rows = [
        Row(number, dict(zip(columns, record, strict=True)), [])
        for number, record in enumerate(zip(*values, strict=True), start=1)
    ]
    return Table(names, rows, "row")


def _column_values(column: Any, pa: Any) -> list[Any]:
    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        # Writers do not always check that Arrow strings are UTF-8: take the raw bytes so that only
        # the bad rows become problems.
        return column.cast(pa.large_binary()).to_pylist()


def type_name(value: Any) -> str:
    """Describe a value's type for a message: ``"an object"``, ``"a list"``, ``"an int"``."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"
