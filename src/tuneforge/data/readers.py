"""Read labelled text rows from CSV, TSV, JSON Lines, Parquet and Excel files.

A bad row never stops a read: it becomes a :class:`Problem` naming the file, the line (or Parquet row, or
Excel sheet and row) and what is wrong, so the user can fix every row in one pass. Only whole-file problems
(missing file, wrong format, bytes that do not decode in the file's encoding, missing column) raise
:class:`~tuneforge.errors.DataError`. Text files are decoded as :mod:`tuneforge.data.encodings` describes;
when that is not UTF-8 the console says so ("read reviews.csv as GB18030 (detected)").

Parsing the file formats themselves lives in :mod:`tuneforge.data.formats`; this module picks the format,
checks the columns and turns the raw rows into :class:`Example` objects and :class:`Problem` entries.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.data.encodings import announce
from tuneforge.data.formats import Row, Table, check_file, load_table, type_name
from tuneforge.errors import DataError

SUPPORTED_FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",  # accepted only when it holds JSON Lines; a JSON array gets a clear error
    ".parquet": "parquet",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
}
FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "parquet", "xlsx")

# Stable problem kinds (``Problem.kind``) and the short name a report shows for each.
PROBLEM_KINDS: dict[str, str] = {
    "empty_text": "empty text",
    "missing_label": "missing label",
    "not_utf8": "not UTF-8",  # Parquet strings (binary columns) and JSON "\\udcff" escapes; text files fail whole
    "cell_too_long": "cell too long",
    "excel_error": "Excel error value",
    "formula_no_value": "formula without a saved value",
    "bad_json": "not a JSON object",
    "wrong_type": "wrong value type",
    "field_count": "wrong number of fields",
    "unseen_label": "label not in training split",
    # tagged text (named entities): CoNLL column files and span files (tuneforge.data.tagging)
    "bad_tag": "invalid tag",
    "orphan_inside": "entity continued without its beginning",
    "missing_tag": "token without a tag",
    "span_outside": "span outside the text",
    "span_overlap": "overlapping spans",
    "empty_span": "empty span",
}

PREVIEW_ROWS = 1000

_FORMAT_ALIASES = {"json": "jsonl", "ndjson": "jsonl", "jsonlines": "jsonl", "pq": "parquet", "excel": "xlsx",
                   "xlsm": "xlsx"}
# Lone surrogates come from JSON "\udXXX" escapes and from non-UTF-8 Parquet bytes decoded with
# errors="surrogateescape"; either would crash a tokenizer later.
_SURROGATES = re.compile("[\ud800-\udfff]")
_ABSENT = object()  # a key or cell the row does not have at all, as opposed to a null value
_MAX_LISTED_COLUMNS = 30


@dataclass
class Example:
    """One good row.

    Attributes:
        text: The input text.
        label: The label name; a list of label names for multi-label data.
        source: Where the row came from: ``"train.csv:17"`` (line) or ``"train.parquet:row 5"``.
    """

    text: str
    label: str | list[str]
    source: str

    @property
    def labels(self) -> list[str]:
        """The label(s) as a list, whether single- or multi-label."""
        return self.label if isinstance(self.label, list) else [self.label]


@dataclass
class Problem:
    """One thing wrong with one row (or, with ``location=None``, with a whole file).

    Attributes:
        file: The path as the user gave it.
        location: ``"line 17"`` or ``"row 5"``; None for whole-file problems.
        kind: Stable machine-readable kind, one of the keys of ``PROBLEM_KINDS``.
        message: Human text, e.g. ``"empty text in column 'text'"``.
    """

    file: str
    location: str | None
    kind: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}, {self.location}" if self.location else self.file
        return f"{where}: {self.message}"


@dataclass
class ReadResult:
    """What :func:`read_examples` found.

    Attributes:
        examples: The good rows only.
        problems: One entry per problem; a bad row with several problems has several entries.
        total_rows: Data rows in the file (header and blank lines not counted).
        encoding: The codec a text file was decoded with (``"utf-8"``, ``"gb18030"``...); None for Parquet
            and Excel, which store text as Unicode.
        encoding_note: ``"read reviews.csv as GB18030 (detected)"`` for reports; None for UTF-8.
    """

    examples: list[Example] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    total_rows: int = 0
    encoding: str | None = None
    encoding_note: str | None = None


@dataclass
class Rows:
    """What :func:`read_rows` found: every row of a file as a dict of raw values, and where each came from.

    Attributes:
        columns: The column names, in file order.
        values: One dict per row, every column a key (None where the row lacks it).
        locations: ``"line 3"``, ``"row 5"`` or ``"sheet 'Sheet1', row 7"`` for each row, for messages.
        encoding: As :attr:`ReadResult.encoding`.
        encoding_note: As :attr:`ReadResult.encoding_note`.
    """

    columns: list[str]
    values: list[dict[str, Any]]
    locations: list[str]
    encoding: str | None = None
    encoding_note: str | None = None


@dataclass(frozen=True)
class _Spec:
    file: str
    unit: str
    text_column: str
    label_column: str | None
    multi_label: bool
    separator: str


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """Return the format to read ``path`` as: ``"csv"``, ``"tsv"``, ``"jsonl"``, ``"parquet"`` or ``"xlsx"``.

    Args:
        path: The data file; only its suffix is looked at.
        fmt: An explicit format (the ``data.format`` config key); overrides the suffix.

    Raises:
        DataError: ``fmt`` is not a known format, or the suffix is not one of ``SUPPORTED_FORMATS``.
    """
    if fmt is not None:
        name = fmt.strip().lower().lstrip(".")
        name = _FORMAT_ALIASES.get(name, name)
        if name not in FORMATS:
            raise DataError(f"data.format {fmt!r} is not supported; use one of: {', '.join(FORMATS)}")
        return name
    suffix = Path(path).suffix.lower()
    if suffix in SUPPORTED_FORMATS:
        return SUPPORTED_FORMATS[suffix]
    if suffix == ".xls":
        raise DataError(f"{path} is an Excel 97-2003 workbook (.xls), which tuneforge cannot read: open it in Excel "
                        "and save it as 'Excel Workbook (.xlsx)' or 'CSV UTF-8'")
    what = f"the suffix {suffix!r}" if suffix else "its name (it has no suffix)"
    raise DataError(
        f"{path}: cannot tell the file format from {what}; supported suffixes: "
        f"{', '.join(SUPPORTED_FORMATS)}. Rename the file, or set data.format to one of: {', '.join(FORMATS)}"
    )


def read_examples(
    path: str | Path,
    text_column: str,
    label_column: str | None,
    *,
    fmt: str | None = None,
    multi_label: bool = False,
    label_separator: str = "|",
    encoding: str | None = None,
    sheet: str | int | None = None,
) -> ReadResult:
    """Read labelled examples, turning every bad row into a :class:`Problem` instead of an error.

    Text is kept as written (numbers become ``str``); labels are stripped, and numeric labels become
    their integer string when integral (``1.0`` -> ``"1"``). Blank lines, and CSV or Excel rows whose cells
    are all empty, are skipped and not counted.

    Args:
        path: CSV, TSV, JSON Lines, Parquet or Excel file.
        text_column: Column (or JSON key) holding the text.
        label_column: Column (or JSON key) holding the label; None for unlabelled text (label "").
        fmt: Format override (``data.format``); by default taken from the suffix.
        multi_label: Labels are lists (JSON/Parquet lists, or strings split on ``label_separator``).
        label_separator: Separator of several labels in one string cell, for ``multi_label``.
        encoding: Encoding of a text file (``data.encoding``); None: byte-order mark, UTF-8, or detected.
        sheet: Excel sheet name or 1-based number (``data.sheet``); None: the first.

    Returns:
        The good examples, the problems of the bad rows, the number of data rows and the encoding used.

    Raises:
        DataError: The file is missing or unreadable, does not decode, is not in the expected format, or
            lacks a column.
    """
    if multi_label and not label_separator:
        raise DataError("data.label_separator must not be empty when data.multi_label is true")
    path = Path(path)
    check_file(path)
    wanted = (text_column, label_column) if label_column is not None else (text_column,)
    table = load_table(path, detect_format(path, fmt), wanted=wanted, limit=None, encoding=encoding, sheet=sheet)
    _check_columns(str(path), table.columns, text_column, label_column)
    announce(table.encoding_note)
    spec = _Spec(str(path), table.unit, text_column, label_column, multi_label, label_separator)
    result = ReadResult(encoding=table.encoding, encoding_note=table.encoding_note)
    for row in table.rows:
        result.total_rows += 1
        example, problems = _row_to_example(row, spec)
        if example is not None:
            result.examples.append(example)
        result.problems.extend(problems)
    return result


def read_columns(
    path: str | Path, fmt: str | None = None, max_rows: int | None = PREVIEW_ROWS, strict: bool = False,
    *, encoding: str | None = None, sheet: str | int | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Return a file's column names and its first rows, e.g. to infer a starter config.

    Rows are dicts with every column as a key (``None`` where a row lacks it) and raw values: strings
    for CSV/TSV and Excel, JSON values for JSON Lines, Python values for Parquet. Lone surrogates are
    replaced by U+FFFD so the values are always safe to print. Unparsable lines and rows with a problem (too
    many fields, a cell too long, an Excel error value) are left out.

    Args:
        path: CSV, TSV, JSON Lines, Parquet or Excel file.
        fmt: Format override (``data.format``); by default taken from the suffix.
        max_rows: How many rows to return at most (None: all).
        strict: Raise instead of leaving out unparsable lines (when every row must be accounted for).
        encoding: Encoding of a text file; None: byte-order mark, UTF-8, or detected.
        sheet: Excel sheet name or 1-based number; None: the first.

    Raises:
        DataError: The file is missing or unreadable, does not decode, or is not in the expected format.
    """
    rows = read_rows(path, fmt, max_rows, strict, encoding=encoding, sheet=sheet)
    return rows.columns, rows.values


def read_rows(
    path: str | Path, fmt: str | None = None, max_rows: int | None = None, strict: bool = True,
    *, encoding: str | None = None, sheet: str | int | None = None,
) -> Rows:
    """Every row of a file (or the first ``max_rows``) with where it came from, as :func:`read_columns` reads
    them; ``strict`` makes an unparsable row, or a row with a problem (too many fields, a cell too long, an
    Excel error value), one error naming the rows, so that nothing is silently dropped or cut short."""
    path = Path(path)
    check_file(path)
    table = load_table(path, detect_format(path, fmt), wanted=None, limit=max_rows, encoding=encoding, sheet=sheet)
    announce(table.encoding_note)
    parsed = list(itertools.islice(table.rows, max_rows))  # rows may be a generator: read it once
    if strict:
        _refuse_bad_rows(str(path), table, parsed)
    good = [row for row in parsed if row.values is not None and not row.problems]  # a preview skips bad rows
    return Rows(table.columns, [_preview_row(row.values, table.columns) for row in good],
                [f"{table.unit} {row.number}" for row in good], table.encoding, table.encoding_note)


def _refuse_bad_rows(file: str, table: Table, parsed: list[Row]) -> None:
    bad = [(row, row.problems[0][1] if row.problems else "cannot be parsed") for row in parsed
           if row.values is None or row.problems]
    if not bad:
        return
    shown = "\n".join(f"  {file}, {table.unit} {row.number}: {why}" for row, why in bad[:20])
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    raise DataError(f"{file}: {len(bad)} unreadable row(s); fix them and run again:\n{shown}{more}")


def _preview_row(values: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    return {name: _printable(values.get(name)) for name in columns}


def _printable(value: Any) -> Any:
    if isinstance(value, str) and _SURROGATES.search(value):
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, list):
        return [_printable(item) for item in value]
    return value


def _check_columns(file: str, columns: list[str], text_column: str, label_column: str | None) -> None:
    if text_column == label_column:
        raise DataError(
            f"data.text_column and data.label_column are both {text_column!r}; they must name different columns"
        )
    roles = (("text", text_column), ("label", label_column)) if label_column is not None else (("text", text_column),)
    missing = [(role, name) for role, name in roles if name not in columns]
    if missing:
        raise DataError(missing_columns_message(file, columns, missing))
    for _, name in roles:
        if columns.count(name) > 1:
            raise DataError(f"{file}: column {name!r} appears {columns.count(name)} times; make the names unique")


def missing_columns_message(file: str, columns: list[str], missing: list[tuple[str, str]]) -> str:
    lines = []
    for role, name in missing:
        line = f"{file}: {role} column {name!r} not found."
        match = _close_match(name, columns)
        if match is not None:
            line += f" Did you mean {match!r}?"
        lines.append(f"{line} Set data.{role}_column to the column that holds the {role}.")
    shown = ", ".join(repr(name) for name in columns[:_MAX_LISTED_COLUMNS])
    if len(columns) > _MAX_LISTED_COLUMNS:
        shown += f", ... ({len(columns) - _MAX_LISTED_COLUMNS} more)"
    lines.append(f"Columns in the file: {shown or 'none'}")
    hint = _header_hint(columns)
    if hint:
        lines.append(hint)
    return "\n".join(lines)


def _close_match(name: str, columns: list[str]) -> str | None:
    lowered = {column.lower(): column for column in reversed(columns)}  # first column wins on ties
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=1)
    return lowered[matches[0]] if matches else None


def _header_hint(columns: list[str]) -> str | None:
    """Explain the usual reason a header has one odd column: the wrong delimiter or a JSON file."""
    if len(columns) != 1:
        return None
    only = columns[0]
    if only.lstrip().startswith("{"):
        return "The file looks like JSON Lines: name it .jsonl or set data.format: jsonl"
    for char, name in ((";", "';'"), ("\t", "a tab"), (",", "','"), ("|", "'|'")):
        if char in only:
            return (
                f"The header is one column, so the file may be delimited by {name}: use ',' for .csv or a tab for .tsv"
            )
    return None


def _row_to_example(row: Row, spec: _Spec) -> tuple[Example | None, list[Problem]]:
    found = row.problems
    text: str | None = None
    label: str | list[str] | None = None
    if row.values is not None:
        text, text_problem = convert_text(row.values.get(spec.text_column, _ABSENT), spec.text_column)
        label, label_problem = "", None
        if spec.label_column is not None:
            label, label_problem = _convert_label(row.values.get(spec.label_column, _ABSENT), spec)
        if text_problem is not None or label_problem is not None:
            found = found + [problem for problem in (text_problem, label_problem) if problem is not None]
    if found or text is None or label is None:
        location = f"{spec.unit} {row.number}"
        return None, [Problem(spec.file, location, kind, message) for kind, message in found]
    source = f"{spec.file}:{row.number}" if spec.unit == "line" else f"{spec.file}:{spec.unit} {row.number}"
    return Example(text, label, source), []


def convert_text(value: Any, column: str) -> tuple[str | None, tuple[str, str] | None]:
    if type(value) is str and not value.isspace() and value and not _SURROGATES.search(value):
        return value, None  # fast path: nearly every row is a good string
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="surrogateescape")
    if value is _ABSENT:
        return None, ("empty_text", f"text is missing in column {column!r}")
    if _is_null(value):
        return None, ("empty_text", f"text is missing (null) in column {column!r}")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None, ("wrong_type", f"text in column {column!r} is {type_name(value)}, not a string")
    text = value if isinstance(value, str) else _scalar_to_str(value)
    if not text.strip():
        detail = "" if not text else " (only whitespace)"
        return None, ("empty_text", f"empty text{detail} in column {column!r}")
    if _SURROGATES.search(text):
        return None, _not_utf8(column)
    return text, None


def _convert_label(value: Any, spec: _Spec) -> tuple[str | list[str] | None, tuple[str, str] | None]:
    column = spec.label_column
    if type(value) is str and not spec.multi_label and value and not _SURROGATES.search(value):
        label = value.strip()
        if label:
            return label, None  # fast path: nearly every row is a good string
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="surrogateescape")
    if value is _ABSENT:
        return None, ("missing_label", f"label is missing in column {column!r}")
    if _is_null(value):
        return None, ("missing_label", f"label is missing (null) in column {column!r}")
    if isinstance(value, list | tuple):
        if not spec.multi_label:
            return None, (
                "wrong_type",
                f"label in column {column!r} is a list; set data.multi_label: true for multi-label data",
            )
        return _label_list(value, column)
    if isinstance(value, dict):
        return None, ("wrong_type", f"label in column {column!r} is {type_name(value)}, not a string or number")
    label = _scalar_to_str(value)
    if _SURROGATES.search(label):
        return None, _not_utf8(column)
    if spec.multi_label:
        return _label_list(label.split(spec.separator), column)
    label = label.strip()
    if not label:
        return None, ("missing_label", f"label is empty in column {column!r}")
    return label, None


def _label_list(items: list[Any] | tuple[Any, ...], column: str) -> tuple[list[str] | None, tuple[str, str] | None]:
    """Clean a multi-label list: strip, drop empty and null parts, drop duplicates, keep order."""
    labels: list[str] = []
    for item in items:
        if isinstance(item, bytes):
            item = item.decode("utf-8", errors="surrogateescape")
        if _is_null(item):
            continue
        if isinstance(item, list | tuple | dict):
            return None, ("wrong_type", f"label list in column {column!r} contains {type_name(item)}")
        label = _scalar_to_str(item).strip()
        if _SURROGATES.search(label):
            return None, _not_utf8(column)
        if label and label not in labels:
            labels.append(label)
    if not labels:
        return None, ("missing_label", f"no labels in column {column!r}")
    return labels, None


def _scalar_to_str(value: Any) -> str:
    # Integral floats come from pandas/Parquet int columns with nulls: label 1.0 means "1".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _not_utf8(column: str) -> tuple[str, str]:
    return "not_utf8", f"bytes that are not UTF-8 in column {column!r} (is the file saved as UTF-8?)"
