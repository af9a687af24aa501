"""Data that trains without an error but is probably not what the user meant: warned about, never silently used.

Computed once where the splits are loaded (:func:`tuneforge.data.splits.load_splits`; the image-folder reader
adds its own about class folders). Each warning is printed on the console as one ``warning: ...`` line when it
is found and kept on the splits, so the run's report.md ("Data warnings") and metrics.json list it too.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import Counter
from dataclasses import replace
from typing import Any

MIN_TRAIN_EXAMPLES = 5  # fewer and a class can be neither learned nor measured
NUMERIC_SHARE = 0.5  # above: the text column is probably the wrong one (order IDs, prices, dates)
SKIPPED_SHARE = 0.2  # above: skipping bad rows threw away a large part of a file
MAX_NAMED = 10  # classes named in one line; the rest are counted
# Digits with separators or symbols only ("20230815001", "2023-08-15", "¥1,299.00"); CJK characters and letters
# are word characters, so any real sentence fails to match.
_NUMBER_ONLY = re.compile(r"[\W_]*\d[\W\d_]*")


def warn(message: str) -> str:
    """Print ``message`` as one ``warning:`` line on stderr and return it, to be kept for the report."""
    print(f"warning: {message}", file=sys.stderr)
    return message


def label_key(label: str) -> str:
    """What spellings of one label have in common: NFKC folds full width ('Ｒｅｆｕｎｄ'), casefold the case."""
    return unicodedata.normalize("NFKC", label).strip().casefold()


def spelling_groups(examples: list[Any]) -> list[Counter[str]]:
    """Labels that differ only by case, width or surrounding spaces: one Counter (spelling -> rows) per group.

    Within a group, ties keep the order the spellings were first read in, so the "most frequent" spelling is
    the same in every run.
    """
    counts = Counter(label for example in examples for label in example.labels)
    groups: dict[str, Counter[str]] = {}
    for label, count in counts.items():
        groups.setdefault(label_key(label), Counter())[label] = count
    return [group for group in groups.values() if len(group) > 1]


def unify_label_spellings(parts: dict[str, list[Any]],
                          merge: bool) -> tuple[dict[str, list[Any]], list[str], list[str]]:
    """Warn about labels spelled several ways, or (``merge``: ``data.normalize_labels``) merge each group into
    its most frequent spelling, the same in every split.

    Args:
        parts: Split -> its examples as read (objects with ``label`` and ``labels``), before any split is carved.
        merge: Rename every spelling of a group to the group's most frequent one.

    Returns:
        The (possibly relabelled) parts, the warnings, and the notes (the one line saying what was merged).
    """
    groups = spelling_groups([example for rows in parts.values() for example in rows])
    if not groups:
        return parts, [], []
    if not merge:
        return parts, [warn(_variants_warning(group)) for group in groups], []
    target = {spelling: group.most_common(1)[0][0] for group in groups for spelling in group}
    merged = {split: [_relabel(example, target) for example in rows] for split, rows in parts.items()}
    note = "data.normalize_labels: merged " + "; ".join(_merge_description(group) for group in groups)
    print(note, file=sys.stderr)
    return merged, [], [note]


def _variants_warning(group: Counter[str]) -> str:
    spellings = ", ".join(f"{label!r} ({count})" for label, count in group.most_common())
    return (f"labels {spellings} differ only in case, width or surrounding spaces and are {len(group)} separate "
            f"classes; data.normalize_labels: true merges them into {group.most_common(1)[0][0]!r}")


def _merge_description(group: Counter[str]) -> str:
    (kept, kept_count), *others = group.most_common()
    merged = ", ".join(f"{label!r} ({count})" for label, count in others)
    return f"{merged} into {kept!r} ({kept_count}), {sum(group.values())} rows"


def _relabel(example: Any, target: dict[str, str]) -> Any:
    if isinstance(example.label, list):  # multi-label: two spellings in one row become one label
        labels = list(dict.fromkeys(target.get(label, label) for label in example.label))
        return replace(example, label=labels) if labels != example.label else example
    new = target.get(example.label, example.label)
    return replace(example, label=new) if new != example.label else example


def class_count_warnings(train: list[Any], validation: list[Any], test: list[Any]) -> list[str]:
    """Warn about classes with fewer than ``MIN_TRAIN_EXAMPLES`` training examples and about classes absent from
    the validation or test split (a split that is empty altogether, e.g. no test file, is not warned about)."""
    counts = Counter(label for example in train for label in example.labels)
    warnings = []
    few = {label: count for label, count in counts.items() if count < MIN_TRAIN_EXAMPLES}
    if few:
        warnings.append(warn(f"{_classes(len(few))} with fewer than {MIN_TRAIN_EXAMPLES} training examples: "
                             f"{_named(few)}; too few to learn or to measure: add examples, or merge each into "
                             "a related class"))
    for name, rows in (("validation", validation), ("test", test)):
        present = {label for example in rows for label in example.labels}
        missing = {label: count for label, count in counts.items() if label not in present}
        if rows and missing:
            warnings.append(warn(f"{_classes(len(missing))} missing from the {name} split, so its {name} scores "
                                 f"say nothing about them: {_named(missing)}"))
    return warnings


def _classes(count: int) -> str:
    return f"{count} class" if count == 1 else f"{count} classes"


def _named(counts: dict[str, int]) -> str:
    """"'发票' (1 training example), 'refund' (3 training examples)": rarest first, at most ``MAX_NAMED``."""
    ordered = sorted(counts.items(), key=lambda item: (item[1], item[0]))
    named = ", ".join(f"{label!r} ({count} training example{'' if count == 1 else 's'})"
                      for label, count in ordered[:MAX_NAMED])
    return named + (f" and {len(ordered) - MAX_NAMED} more" if len(ordered) > MAX_NAMED else "")


def numeric_text_warning(texts: list[str], column: str, file: str) -> str | None:
    """Warn when more than half the texts are numbers only: probably the wrong column (order IDs, prices)."""
    numeric = [text for text in texts if _NUMBER_ONLY.fullmatch(text.strip())]
    if not texts or len(numeric) <= NUMERIC_SHARE * len(texts):
        return None
    return warn(f"{len(numeric) / len(texts):.0%} of the texts in column {column!r} of {file} are only numbers "
                f"(e.g. {numeric[0].strip()!r}): is data.text_column the column that holds the text?")


def skipped_shares(skipped_rows: dict[str, int], total_rows: dict[str, int]) -> tuple[list[str], list[str]]:
    """One line per file with skipped rows (``data.on_bad_rows: skip``): "skipped 68 of 90 rows (76%) of train.csv".

    Args:
        skipped_rows: File -> distinct rows skipped in it.
        total_rows: File -> data rows read from it (images, for an image folder).

    Returns:
        (warnings, notes): a file that lost more than ``SKIPPED_SHARE`` of its rows is a warning, else a note.
    """
    warnings, notes = [], []
    for file, total in total_rows.items():
        skipped = skipped_rows.get(file, 0)
        if not skipped or not total:
            continue
        line = f"skipped {skipped:,} of {total:,} rows ({_percent(skipped / total)}) of {file} (data.on_bad_rows: skip)"
        if skipped / total > SKIPPED_SHARE:
            warnings.append(warn(f"{line}; that much bad data usually means a wrong column, delimiter or encoding: "
                                 "set data.on_bad_rows: error to list the bad rows"))
        else:
            print(line, file=sys.stderr)
            notes.append(line)
    return warnings, notes


def _percent(share: float) -> str:
    return "<1%" if share < 0.005 else f"{share:.0%}"
