"""Image-text pairs (captions, or questions with answers) from tables, checked before any model loads.

A CSV/TSV/JSONL/Parquet table names an image path (``data.image_column``, relative to the table), a
text (``data.text_column``: the caption, or the question) and, for VQA, an answer
(``data.label_column``). Rows and image files are checked exactly like image-classification data:
each problem names the file and line, and ``data.on_bad_rows`` decides between stopping and skipping.

Held-out splits are carved by image, so no image's captions or questions are in two splits.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

from tuneforge.config import DataConfig
from tuneforge.data.encodings import announce
from tuneforge.data.formats import check_file, load_table
from tuneforge.data.images import check_image_files, read_images, resolve_image_files
from tuneforge.data.readers import (
    PROBLEM_KINDS,
    Problem,
    ReadResult,
    convert_text,
    detect_format,
    missing_columns_message,
)
from tuneforge.data.splits import Splits
from tuneforge.data.validation import count_bad_rows, format_problems, summarize_skipped
from tuneforge.errors import DataError

PROBLEM_KINDS.update({"empty_answer": "empty answer"})


@dataclass
class ImageText:
    """One image with its caption (or question and answer), and the table line it came from."""

    image: str
    text: str
    answer: str | None
    source: str

    @property
    def labels(self) -> list[str]:  # no classes: captions are free text
        return []


def read_image_texts(path: Path, data: DataConfig, answers: bool, language: str = "en") -> ReadResult:
    """Rows of an image-text table; ``language`` other than en reads the ``captions`` column (tuxpaint)."""
    if path.is_dir():
        raise DataError(f"{path}: image-text data is a table (CSV/TSV/JSONL/Parquet) with columns "
                        f"{data.image_column!r} and {data.text_column!r}, not a folder")
    check_file(path)
    table = load_table(path, detect_format(path, data.format), wanted=None, limit=None, encoding=data.encoding,
                       sheet=data.sheet)
    announce(table.encoding_note)
    roles = [("image", data.image_column), ("text", data.text_column)] + ([("label", data.label_column)] if answers
                                                                          else [])
    missing = [(role, name) for role, name in roles if name not in table.columns]
    if missing:
        raise DataError(missing_columns_message(str(path), table.columns, missing))
    if language != "en" and "captions" not in table.columns:
        raise DataError(f"{path}: frozen.caption_language {language!r} needs a 'captions' column of "
                        "{language: caption} (as the built-in tuxpaint has); set it to en")
    result, untranslated = ReadResult(), 0
    for row in table.rows:
        result.total_rows += 1
        location = f"{table.unit} {row.number}"
        found = list(row.problems)
        values = row.values or {}
        if language != "en" and row.values is not None:
            captions = values.get("captions") or {}
            if not isinstance(captions, dict):
                raise DataError(f"{path}, {location}: the 'captions' column must hold {{language: caption}} "
                                "objects (JSONL or Parquet), as the built-in tuxpaint does")
            values = {**values, data.text_column: captions.get(language)}
            if values[data.text_column] is None and row.values is not None:
                untranslated += 1
                continue
        converted = {}
        for role, column in roles if row.values is not None else []:
            value, problem = convert_text(values.get(column), column)
            if problem is not None:
                found.append(("empty_answer", problem[1]) if role == "label" and problem[0] == "empty_text"
                             else problem)
            converted[role] = value.strip() if value is not None else None
        if found:
            result.problems += [Problem(str(path), location, kind, message) for kind, message in found]
            continue
        image = Path(converted["image"]).expanduser()
        image = image if image.is_absolute() else path.parent / image
        source = f"{path}:{row.number}" if table.unit == "line" else f"{path}:row {row.number}"
        result.examples.append(ImageText(str(image), converted["text"], converted.get("label"), source))
    if untranslated:
        print(f"{path}: {untranslated} rows have no {language!r} caption; left out", file=sys.stderr)
    return check_image_files(result, path)


def load_image_text_splits(data: DataConfig, seed: int, answers: bool, language: str = "en") -> Splits:
    """Train/validation/test image-text rows; missing held-out splits carved by image, seeded.

    Raises:
        DataError: listing the bad rows (first 20 and a count) unless ``data.on_bad_rows`` is skip.
    """
    files, _ = resolve_image_files(data)
    results = {split: read_image_texts(path, data, answers, language) for split, path in files.items()}
    problems = [p for r in results.values() for p in r.problems]
    total_rows = sum(r.total_rows for r in results.values())
    if problems and data.on_bad_rows == "error":
        raise DataError(format_problems(problems, total_rows))
    read = {split: _cap(r.examples, data.max_examples, seed) for split, r in results.items()}
    train, validation, test = _assign(read, data.split, seed)
    sources = {split: f"{data.dataset} (built-in)" if not data.train_file else str(path)
               for split, path in files.items()}
    for split in ("validation", "test"):
        sources.setdefault(split, f"images held out from {sources['train']}")
    splits = Splits(train, validation, test, sources, summarize_skipped(problems), count_bad_rows(problems),
                    total_rows)
    if not splits.train:
        raise DataError(f"no usable training rows in {sources['train']}")
    if not splits.validation:
        raise DataError("the validation split is empty: add rows, give data.validation_file or change data.split")
    return splits


def _assign(read: dict[str, list[ImageText]], fractions: list[float], seed: int) -> list[list[ImageText]]:
    train = read["train"]
    if "validation" in read:
        return [train, read["validation"], read.get("test", [])]
    if "test" in read:
        share = fractions[1] / (fractions[0] + fractions[1])
        train, validation, _ = split_by_image(train, [1 - share, share, 0.0], seed)
        return [train, validation, read["test"]]
    return split_by_image(train, fractions, seed)


def split_by_image(rows: list[ImageText], fractions: list[float], seed: int) -> list[list[ImageText]]:
    """Seeded split of the distinct images; every row of an image goes where its image goes."""
    images = sorted({row.image for row in rows})
    random.Random(seed).shuffle(images)
    n_val, n_test = round(len(images) * fractions[1]), round(len(images) * fractions[2])
    part = {image: 1 for image in images[:n_val]} | {image: 2 for image in images[n_val : n_val + n_test]}
    parts: list[list[ImageText]] = [[], [], []]
    for row in rows:
        parts[part.get(row.image, 0)].append(row)
    return parts


def _cap(rows: list[ImageText], limit: int | None, seed: int) -> list[ImageText]:
    return rows if limit is None or len(rows) <= limit else random.Random(seed).sample(rows, limit)


def read_categories(folder: Path, data: DataConfig) -> dict[str, list[str]]:
    """Category -> image paths of a folder with one sub-folder per category (fast binding), all checked."""
    result = read_images(folder, data)
    if result.problems:
        raise DataError(format_problems(result.problems, result.total_rows))
    categories: dict[str, list[str]] = {}
    for example in result.examples:
        categories.setdefault(example.label, []).append(example.image)
    return {name: sorted(paths) for name, paths in sorted(categories.items())}
