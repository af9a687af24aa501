"""``data.paraphrase_column``: paraphrases written beside each training text join training with its label.

Back-translation (the classic paraphraser) needs translation models that cannot be installed offline, so
tuneforge reads paraphrases a user made elsewhere (a translation service, an annotator) or with
``tuneforge paraphrase`` (a local causal LM), from a column of the training file. Only rows that ended up in
the training split contribute: a paraphrase of a validation or test row never trains the model that is scored
on it.
"""

from __future__ import annotations

from pathlib import Path

from tuneforge.config import DataConfig
from tuneforge.data.readers import Example, read_rows
from tuneforge.errors import DataError


def with_paraphrases(train: list[Example], path: Path, data: DataConfig) -> tuple[list[Example], str]:
    """``train`` plus one example per non-empty paraphrase of its rows, and a note saying how many joined.

    A cell holds one paraphrase (CSV, TSV, Excel) or a list of them (JSON Lines, Parquet). Paraphrases equal to
    their text are left out.

    Raises:
        DataError: the training file has no such column.
    """
    column = data.paraphrase_column
    rows = read_rows(path, data.format, None, strict=False, encoding=data.encoding, sheet=data.sheet)
    if column not in rows.columns:
        raise DataError(f"{path}: no column '{column}' (data.paraphrase_column); columns: {', '.join(rows.columns)}")
    cells = {}
    for location, values in zip(rows.locations, rows.values, strict=True):
        unit, _, number = location.partition(" ")
        # the reader names a row "<file>:<line>" for text files and "<file>:row <n>" for the others
        cells[f"{path}:{number}" if unit == "line" else f"{path}:{location}"] = values.get(column)
    added = [Example(text, example.label, f"{example.source} (paraphrase)")
             for example in train for text in _paraphrases(cells.get(example.source)) if text != example.text]
    return train + added, (f"{len(added):,} paraphrases (column '{column}') joined the {len(train):,} training "
                           "rows")


def _paraphrases(cell) -> list[str]:
    if cell is None:
        return []
    values = cell if isinstance(cell, list | tuple) else [cell]
    return [str(value).strip() for value in values if value is not None and str(value).strip()]
