"""Checks across splits, and the report of bad rows a user reads before fixing their data."""

from __future__ import annotations

from tuneforge.data.readers import PROBLEM_KINDS, Example, Problem

MAX_SHOWN = 20
_HINT = "Fix these rows, or set data.on_bad_rows: skip to train on the good rows only."


def check_unseen_labels(known: set[str], other: list[Example], split_name: str, file: str) -> list[Problem]:
    """Report labels the model cannot have learned: not among the training split's labels.

    Args:
        known: Every label of the training split (or of a trained model).
        other: The validation, test or evaluation examples.
        split_name: Name of the other split (``"validation"``, ``"test"``), used in the message.
        file: The file the other split came from, as the user gave it.

    Returns:
        One problem per row and unseen label (a multi-label row can have several), kind ``"unseen_label"``.
    """
    problems = []
    for example in other:
        for label in example.labels:
            if label not in known:
                message = f"label {label!r} in the {split_name} split never appears in the training split"
                problems.append(Problem(file, _location(example.source, file), "unseen_label", message))
    return problems


def format_problems(problems: list[Problem], total_rows: int) -> str:
    """Build the report a user reads: a count, the first ``MAX_SHOWN`` problems and what to do.

    Args:
        problems: Every problem found, in file order.
        total_rows: Data rows read across all files.

    Returns:
        A multi-line report, e.g. ``"Found 37 problems in 1,204 rows:"``, one indented line per shown
        problem, ``"  ... and 17 more"`` when some are not shown, then a hint line.
    """
    if not problems:
        return f"No problems found in {_count(total_rows, 'row')}."
    lines = [f"Found {_count(len(problems), 'problem')} in {_count(total_rows, 'row')}:"]
    lines += [f"  {problem}" for problem in problems[:MAX_SHOWN]]
    if len(problems) > MAX_SHOWN:
        lines.append(f"  ... and {len(problems) - MAX_SHOWN:,} more")
    lines.append(_HINT)
    return "\n".join(lines)


def summarize_skipped(problems: list[Problem]) -> dict[str, int]:
    """Count the rows with each kind of problem, for the report when bad rows are skipped.

    A row with two problems of one kind counts once for that kind; a row with problems of two kinds
    counts for both. Whole-file problems (no location) count one each.

    Args:
        problems: The problems of the skipped rows.

    Returns:
        Short kind name (e.g. ``"empty text"``) -> number of rows, most frequent first.
    """
    rows: dict[str, set[object]] = {}
    for index, problem in enumerate(problems):
        name = PROBLEM_KINDS.get(problem.kind, problem.kind.replace("_", " "))
        where = (problem.file, problem.location) if problem.location else index
        rows.setdefault(name, set()).add(where)
    counts = {name: len(where) for name, where in rows.items()}
    return dict(sorted(counts.items(), key=lambda item: -item[1]))  # stable: ties keep first-seen order


def skipped_rows_by_file(problems: list[Problem]) -> dict[str, int]:
    """File -> distinct rows with at least one problem in it (whole-file problems have no row and count none)."""
    rows: dict[str, set[str]] = {}
    for problem in problems:
        if problem.location is not None:
            rows.setdefault(problem.file, set()).add(problem.location)
    return {file: len(locations) for file, locations in rows.items()}


def _location(source: str, file: str) -> str:
    """Turn an Example.source (``"a.csv:17"``, ``"a.parquet:row 5"``) into a Problem location."""
    rest = source[len(file) + 1 :] if source.startswith(f"{file}:") else source.rsplit(":", 1)[-1]
    return f"line {rest}" if rest.isdigit() else rest


def _count(number: int, word: str) -> str:
    return f"{number:,} {word}{'' if number == 1 else 's'}"


def count_bad_rows(problems: list[Problem]) -> int:
    """Distinct rows with at least one problem (a row with two problems is one skipped row)."""
    return len({(p.file, p.location) for p in problems if p.location is not None})
