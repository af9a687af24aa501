"""From config to validated train/validation/test examples: read, split, check, then stop or skip.

Validation runs over every row of every file before any model is loaded, so a bad row costs the
user seconds, not a crashed training run.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.config import DataConfig
from tuneforge.data.hygiene import class_count_warnings, numeric_text_warning, skipped_shares, unify_label_spellings
from tuneforge.data.paraphrases import with_paraphrases
from tuneforge.data.readers import Example, Problem, ReadResult, read_examples
from tuneforge.data.validation import (
    check_unseen_labels,
    count_bad_rows,
    format_problems,
    skipped_rows_by_file,
    summarize_skipped,
)
from tuneforge.errors import DataError


@dataclass
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    sources: dict[str, str]  # split -> file it came from (or "split of <file>")
    skipped: dict[str, int] = field(default_factory=dict)  # problem kind -> rows with that problem
    skipped_rows: int = 0  # distinct rows skipped (a row can have several kinds of problem)
    total_rows: int = 0
    warnings: list[str] = field(default_factory=list)  # data hygiene (tuneforge.data.hygiene), for the report
    notes: list[str] = field(default_factory=list)  # facts worth a line in the report: merged labels, skipped shares

    def labels(self) -> list[str]:
        """Label names in a stable order: sorted names of every label seen in training."""
        names: set[str] = set()
        for example in self.train:
            names.update(example.labels)
        return sorted(names)


def load_splits(data: DataConfig, seed: int, files: dict[str, Path] | None = None,
                read: Callable[[Path, DataConfig], ReadResult] | None = None) -> Splits:
    """Read, split and validate the data a config points at; warn about data that is probably not meant.

    ``files`` and ``read`` default to text tables; image classification passes its own sources and reader.
    Labels spelled several ways are merged here when ``data.normalize_labels`` is set, before any split is
    carved or the label set is built, so every split uses the same names.

    Raises:
        DataError: listing the bad rows (first 20 and a count) unless ``data.on_bad_rows`` is skip.
    """
    seed = data.split_seed if data.split_seed is not None else seed
    files = files or resolve_files(data)
    results = {split: (read or _read)(path, data) for split, path in files.items()}
    problems = [p for result in results.values() for p in result.problems]
    total_rows = sum(result.total_rows for result in results.values())
    # the image-folder reader's warnings about class folders (printed when it found them)
    warnings = [w for result in results.values() for w in getattr(result, "warnings", [])]
    parts, found, merged = unify_label_spellings({k: r.examples for k, r in results.items()}, data.normalize_labels)
    warnings += found + _numeric_text_warnings(parts["train"], data, str(files["train"]))
    notes = [result.encoding_note for result in results.values() if result.encoding_note] + merged

    splits = _assign_splits(parts, data.split, seed)
    splits = [_cap(rows, data.max_examples, seed) for rows in splits]  # before the label checks below
    known = {label for example in splits[0] for label in example.labels}
    for name in ("validation", "test"):
        file = str(files.get(name, files["train"]))
        problems += check_unseen_labels(known, splits[_INDEX[name]], name, file)
        splits[_INDEX[name]] = only_known_labels(splits[_INDEX[name]], known)

    if problems and data.on_bad_rows == "error":
        raise DataError(format_problems(problems, total_rows))
    train, validation, test = splits
    if data.paraphrase_column:
        if read is not None or not data.train_file:
            raise DataError("data.paraphrase_column: paraphrases are read from a text table given as "
                            "data.train_file; set it null")
        train, note = with_paraphrases(train, files["train"], data)
        notes.append(note)
    sources = _describe_sources(files, None if data.train_file else data.dataset)
    result = Splits(train, validation, test, sources, summarize_skipped(problems), count_bad_rows(problems),
                    total_rows, warnings, notes)
    _check_usable(result, data)
    result.warnings += class_count_warnings(train, validation, test)
    _add_skipped_shares(result, problems, {str(path): results[split].total_rows for split, path in files.items()})
    return result


def _numeric_text_warnings(train: list, data: DataConfig, file: str) -> list[str]:
    texts = [example.text for example in train if isinstance(example, Example)]  # image rows have no text
    warning = numeric_text_warning(texts, _columns(data)[0], file) if texts else None
    return [warning] if warning else []


def _add_skipped_shares(splits: Splits, problems: list[Problem], total_rows: dict[str, int]) -> None:
    """The share of each file's rows that ``data.on_bad_rows: skip`` left out: a warning above 20%, else a note."""
    warnings, notes = skipped_shares(skipped_rows_by_file(problems), total_rows)
    splits.warnings += warnings
    splits.notes += notes


_INDEX = {"train": 0, "validation": 1, "test": 2}


def resolve_files(data: DataConfig) -> dict[str, Path]:
    """Split -> file: the given files, or the prepared files of the built-in dataset (its official validation and
    test files where it ships them; otherwise they are carved from train)."""
    if data.train_file:
        files = {"train": Path(data.train_file)}
        for split, name in (("validation", data.validation_file), ("test", data.test_file)):
            if name:
                files[split] = Path(name)
        return files
    if data.validation_file or data.test_file:
        raise DataError("data.validation_file / data.test_file need data.train_file as well")
    if not data.dataset:
        raise DataError("no data: set data.dataset (see `tuneforge list datasets`) or data.train_file")
    from tuneforge.assets.datasets import DATASETS, dataset_folder

    asset = DATASETS.get(data.dataset)
    folder = dataset_folder(data.dataset)
    return {split: folder / name for split, name in asset.files.items() if split in _INDEX}


def _read(path: Path, data: DataConfig) -> ReadResult:
    text_column, label_column, fmt = _columns(data)
    own_files = bool(data.train_file)  # built-in datasets are UTF-8 JSONL, whatever the config says of files
    return read_examples(path, text_column, label_column, fmt=fmt, multi_label=data.multi_label,
                         label_separator=data.label_separator, encoding=data.encoding if own_files else None,
                         sheet=data.sheet if own_files else None)


def _columns(data: DataConfig) -> tuple[str, str, str | None]:
    """(text column, label column, format) of the files: a built-in dataset is JSONL with its own column names."""
    if data.train_file:
        return data.text_column, data.label_column, data.format
    from tuneforge.assets import DATASETS

    asset = DATASETS.get(data.dataset)
    return asset.text_column, asset.label_column, "jsonl"


def _assign_splits(
    read: dict[str, list[Example]], fractions: list[float], seed: int
) -> list[list[Example]]:
    """Respect the splits the user gave; carve the missing ones from train, stratified and seeded."""
    train = read["train"]
    if "validation" in read and "test" in read:
        return [train, read["validation"], read["test"]]
    if "validation" in read:  # no test set given: evaluate on validation only
        return [train, read["validation"], []]
    if "test" in read:
        share = fractions[1] / (fractions[0] + fractions[1])
        train, validation, _ = stratified_split(train, [1 - share, share, 0.0], seed)
        return [train, validation, read["test"]]
    return list(stratified_split(train, fractions, seed))


def stratified_split(
    examples: list[Example], fractions: list[float], seed: int
) -> tuple[list[Example], list[Example], list[Example]]:
    """Split keeping each label's share in every part; the same seed always gives the same split."""
    by_label: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        key = "|".join(example.labels)
        by_label[key].append(example)
    rng = random.Random(seed)
    parts: tuple[list[Example], list[Example], list[Example]] = ([], [], [])
    for key in sorted(by_label):
        group = by_label[key]
        rng.shuffle(group)
        n_val = round(len(group) * fractions[1])
        n_test = round(len(group) * fractions[2])
        n_train = len(group) - n_val - n_test
        parts[0].extend(group[:n_train])
        parts[1].extend(group[n_train : n_train + n_val])
        parts[2].extend(group[n_train + n_val :])
    for part in parts:  # interleave labels again, deterministically
        rng.shuffle(part)
    return parts


def only_known_labels(examples: list[Example], known: set[str]) -> list[Example]:
    """The examples whose every label is in ``known``."""
    return [e for e in examples if set(e.labels) <= known]


def _cap(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """A seeded sample of ``limit`` rows (not the head of a possibly sorted file)."""
    if limit is None or len(examples) <= limit:
        return examples
    return random.Random(seed).sample(examples, limit)


def _describe_sources(files: dict[str, Path], dataset: str | None) -> dict[str, str]:
    """Split -> where it came from, as the report names it: the file, or the built-in dataset (and its file)."""
    described = {split: str(path) for split, path in files.items()}
    if dataset:
        described = {split: f"{dataset} (built-in)" if split == "train" else f"{dataset} (built-in {path.name})"
                     for split, path in files.items()}
    for split in ("validation", "test"):
        described.setdefault(split, f"seeded split of {described['train']}")
    return described


def _check_usable(splits: Splits, data: DataConfig) -> None:
    if not splits.train:
        raise DataError(f"no usable training rows in {splits.sources['train']}")
    if not splits.validation:
        raise DataError("the validation split is empty: add rows, give data.validation_file or change data.split")
    if not data.multi_label and len(splits.labels()) < 2:
        raise DataError(f"the training data has a single label {splits.labels()}: classification needs at least 2")
