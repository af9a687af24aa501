"""Named-entity evaluation: entity-level scores (seqeval), the kinds of mistakes, and a type confusion table.

Scores are computed by seqeval in strict IOB2 mode (``mode="strict", scheme=IOB2``), the CoNLL convention: an
entity is a ``B-X`` followed by any ``I-X``; a prediction counts only when its type and both boundaries equal a
gold entity's. What strict mode does with an ``I-X`` that does not continue a ``B-X``/``I-X`` of the same type
(after ``O``, at the start, or after another type): it is **no entity at all**, in gold and in predictions
alike. A lone gold ``I-PER`` is therefore not counted in support, and a predicted one earns nothing (the
lenient, default seqeval mode would count it as a one-word entity). The data readers write IOB2 and the CRF's
constrained decoding never produces a lone ``I-``; a model without a CRF can, and strict mode does not reward it.

The error analysis and the confusion table work on entities as character spans (``Entity`` from
``tuneforge.data.tagging``, or anything with ``start``, ``end`` and ``type``), so they can show entity texts.
Everything returned is plain Python, ready for ``metrics.json``.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from seqeval.metrics import accuracy_score, classification_report
from seqeval.scheme import IOB2, Entities

if TYPE_CHECKING:
    from tuneforge.data.tagging import Entity

NONE = "(none)"  # the confusion table's row of predictions with no gold entity, and column of missed entities
ERROR_KINDS = ("missed", "spurious", "wrong_type", "wrong_boundary", "wrong_type_and_boundary")
ERROR_MEANINGS = {
    "missed": "a gold entity that no prediction overlaps",
    "spurious": "a predicted entity that overlaps no gold entity",
    "wrong_type": "the right span with another type",
    "wrong_boundary": "the right type, overlapping the gold span but not equal to it",
    "wrong_type_and_boundary": "overlapping a gold entity, with another type and another span",
}
_Span = tuple[int, int, str]  # (start, end, type)


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """Entity-level precision, recall and F1 (strict IOB2, as the module docstring says), and token accuracy.

    Micro averages pool every entity; macro averages are the mean over entity types that occur in gold or in
    predictions. Sentences without any entity still count towards token accuracy.

    Args:
        gold: One list of BIO tags per sentence.
        pred: The predicted tags, sentence for sentence and tag for tag.

    Returns:
        ``f1``, ``precision``, ``recall`` (micro; ``f1`` is the main metric), ``macro_f1``, ``macro_precision``,
        ``macro_recall``, ``accuracy`` (per token), ``num_examples`` (sentences), ``num_entities`` (gold),
        ``num_predicted``, and ``per_type``: type -> ``precision``, ``recall``, ``f1``, ``support``.

    Raises:
        ValueError: Different numbers of sentences or tags, or a tag that is not ``O``, ``B-X`` or ``I-X``.
    """
    _check_tags(gold, pred)
    gold, pred = [list(tags) for tags in gold], [list(tags) for tags in pred]
    with warnings.catch_warnings():
        # seqeval warns (and numpy about an empty mean) when there are no entities at all; zero_division covers it
        warnings.simplefilter("ignore")
        report = classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
        accuracy = float(accuracy_score(gold, pred)) if any(gold) else 0.0
    micro, macro = report.pop("micro avg"), report.pop("macro avg")
    report.pop("weighted avg", None)
    return {
        "f1": _number(micro["f1-score"]),
        "precision": _number(micro["precision"]),
        "recall": _number(micro["recall"]),
        "macro_f1": _number(macro["f1-score"]),
        "macro_precision": _number(macro["precision"]),
        "macro_recall": _number(macro["recall"]),
        "accuracy": accuracy,
        "num_examples": len(gold),
        "num_entities": int(micro["support"]),
        "num_predicted": sum(len(row) for row in Entities(pred, IOB2).entities),
        "per_type": {
            name: {"precision": _number(row["precision"]), "recall": _number(row["recall"]),
                   "f1": _number(row["f1-score"]), "support": int(row["support"])}
            for name, row in sorted(report.items())
        },
    }


def _check_tags(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> None:
    """Fail with the sentence and tag, instead of seqeval's KeyError deep inside."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    for index, (gold_tags, pred_tags) in enumerate(zip(gold, pred, strict=True)):
        if len(gold_tags) != len(pred_tags):
            raise ValueError(f"sentence {index}: {len(gold_tags)} gold tags but {len(pred_tags)} predicted")
        for tag in (*gold_tags, *pred_tags):
            prefix, dash, kind = tag.partition("-")
            if tag != "O" and not (prefix in ("B", "I") and dash and kind):
                raise ValueError(f"sentence {index}: tag {tag!r} is not BIO ('O', 'B-<type>' or 'I-<type>')")


def _number(value) -> float:
    """A plain float; seqeval's macro average of no types is NaN, which is 0 here as for an empty micro."""
    value = float(value)
    return 0.0 if value != value else value


def entity_errors(gold_entities: Sequence[Iterable[Entity]], pred_entities: Sequence[Iterable[Entity]],
                  texts: Sequence[str], max_examples: int = 5) -> dict:
    """Classify every disagreement between gold and predicted entities, sentence by sentence.

    Exact matches (same span and type) are not errors. Each other prediction is judged against the unmatched
    gold entity it overlaps best (same span first, then same type, then the largest overlap): ``wrong_type``,
    ``wrong_boundary`` or ``wrong_type_and_boundary``; a prediction that overlaps none is ``spurious``. A gold
    entity that no prediction overlaps is ``missed``; one that overlaps only predictions already judged against
    another gold entity is paired with its best overlap too. So every entity that is not an exact match appears
    in at least one error, and one prediction across two gold entities (``[张三][李四]`` read as ``[张三李四]``)
    is two boundary errors.

    Args:
        gold_entities: Per sentence, the gold entities (character spans with a type).
        pred_entities: Per sentence, the predicted entities.
        texts: Per sentence, its text (to show the entities' words).
        max_examples: Examples kept per kind, the first ones in sentence order.

    Returns:
        ``counts`` (kind -> number, every kind present), ``total``, and ``examples``: kind -> list of
        ``{"sentence": index, "text": sentence, "gold": entity or None, "predicted": entity or None}``, each
        entity as ``{"text", "type", "start", "end"}``.

    Raises:
        ValueError: The three sequences differ in length.
    """
    if not len(gold_entities) == len(pred_entities) == len(texts):
        raise ValueError(f"{len(gold_entities)} gold, {len(pred_entities)} predicted and {len(texts)} texts")
    counts = Counter({kind: 0 for kind in ERROR_KINDS})
    examples: dict[str, list[dict]] = {kind: [] for kind in ERROR_KINDS}
    for index, (gold, pred, text) in enumerate(zip(gold_entities, pred_entities, texts, strict=True)):
        for kind, gold_span, pred_span in sentence_errors(_spans(gold), _spans(pred)):
            counts[kind] += 1
            if len(examples[kind]) < max_examples:
                examples[kind].append({"sentence": index, "text": text, "gold": _entity_dict(gold_span, text),
                                       "predicted": _entity_dict(pred_span, text)})
    return {"counts": dict(counts), "total": sum(counts.values()), "examples": examples}


def sentence_errors(gold: set[_Span], pred: set[_Span]) -> list[tuple[str, _Span | None, _Span | None]]:
    """The errors of one sentence as ``(kind, gold span, predicted span)``, spans as ``(start, end, type)``;
    the rules are :func:`entity_errors`'."""
    gold_rest, pred_rest = sorted(gold - pred), sorted(pred - gold)
    errors: list[tuple[str, _Span | None, _Span | None]] = []
    judged: set[_Span] = set()
    for predicted in pred_rest:
        overlapping = [g for g in gold_rest if _overlap(g, predicted) > 0]
        if not overlapping:
            errors.append(("spurious", None, predicted))
            continue
        best = min(overlapping, key=lambda g: _closeness(g, predicted))
        judged.add(best)
        errors.append((_kind(best, predicted), best, predicted))
    for missed in gold_rest:
        if missed in judged:
            continue
        overlapping = [p for p in pred_rest if _overlap(missed, p) > 0]
        if not overlapping:
            errors.append(("missed", missed, None))
            continue
        best = min(overlapping, key=lambda p: _closeness(missed, p))
        errors.append((_kind(missed, best), missed, best))
    return sorted(errors, key=lambda error: min(s[0] for s in error[1:] if s is not None))


def _spans(entities: Iterable[Entity]) -> set[_Span]:
    return {(int(e.start), int(e.end), str(e.type)) for e in entities}


def _overlap(a: _Span, b: _Span) -> int:
    return min(a[1], b[1]) - max(a[0], b[0])


def _closeness(gold: _Span, pred: _Span) -> tuple:
    """Sort key: the same span first, then the same type, then the largest overlap, then the earliest."""
    return (gold[:2] != pred[:2], gold[2] != pred[2], -_overlap(gold, pred), gold[0], pred[0])


def _kind(gold: _Span, pred: _Span) -> str:
    if gold[:2] == pred[:2]:
        return "wrong_type"
    return "wrong_boundary" if gold[2] == pred[2] else "wrong_type_and_boundary"


def _entity_dict(span: _Span | None, text: str) -> dict | None:
    if span is None:
        return None
    return {"text": text[span[0]:span[1]], "type": span[2], "start": span[0], "end": span[1]}


def type_confusion(gold_entities: Sequence[Iterable[Entity]], pred_entities: Sequence[Iterable[Entity]]) -> dict:
    """How often each gold type was predicted as each type, for entities matched by exact span.

    A gold entity whose span no prediction has counts in the ``(none)`` column (missed or wrong boundary); a
    prediction whose span is no gold entity's counts in the ``(none)`` row. The diagonal holds exact matches.

    Args:
        gold_entities: Per sentence, the gold entities.
        pred_entities: Per sentence, the predicted entities.

    Returns:
        ``labels`` (the types, sorted, then ``(none)``) and ``matrix``: rows are gold labels, columns predicted
        labels, in ``labels`` order.
    """
    if len(gold_entities) != len(pred_entities):
        raise ValueError(f"{len(gold_entities)} gold sentences but {len(pred_entities)} predicted")
    pairs: Counter[tuple[str, str]] = Counter()
    for gold, pred in zip(gold_entities, pred_entities, strict=True):
        pairs.update(_span_pairs(_spans(gold), _spans(pred)))
    labels = sorted({name for pair in pairs for name in pair} - {NONE}) + [NONE]
    matrix = [[pairs[(row, column)] for column in labels] for row in labels]
    return {"labels": labels, "matrix": matrix}


def _span_pairs(gold: set[_Span], pred: set[_Span]) -> list[tuple[str, str]]:
    """(gold type, predicted type) per span; a span with several types pairs equal types first."""
    by_span: dict[tuple[int, int], tuple[list[str], list[str]]] = {}
    for side, spans in ((0, gold), (1, pred)):
        for start, end, kind in sorted(spans):
            by_span.setdefault((start, end), ([], []))[side].append(kind)
    pairs = []
    for gold_types, pred_types in by_span.values():
        for kind in [k for k in gold_types if k in pred_types]:
            gold_types.remove(kind)
            pred_types.remove(kind)
            pairs.append((kind, kind))
        pairs.extend(zip(gold_types, pred_types, strict=False))
        common = min(len(gold_types), len(pred_types))
        pairs.extend((kind, NONE) for kind in gold_types[common:])
        pairs.extend((NONE, kind) for kind in pred_types[common:])
    return pairs


def report_section(scores: dict, errors: dict | None = None, confusion: dict | None = None,
                   max_examples: int = 3) -> str:
    """Markdown for the run report: headline scores, a per-type table, the type confusion table and examples of
    each kind of error. Text is written as is (Chinese included); only Markdown's own characters are escaped.

    The body has ``###`` headings, to go under a ``##`` heading of the report (``write_report``'s
    ``extra_sections={"Entities": report_section(...)}``).

    Args:
        scores: From :func:`entity_scores`.
        errors: From :func:`entity_errors`; left out when None.
        confusion: From :func:`type_confusion`; left out when None.
        max_examples: Examples shown per kind of error.
    """
    parts = [_scores_part(scores)]
    if scores.get("per_type"):
        rows = [[name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"])]
                for name, row in scores["per_type"].items()]
        parts.append("### Per entity type\n\n" + _table(["type", "precision", "recall", "F1", "support"], rows))
    if confusion and len(confusion["labels"]) > 1:
        parts.append(_confusion_part(confusion))
    if errors is not None:
        parts.append(_errors_part(errors, max_examples))
    return "\n\n".join(parts)


def _scores_part(scores: dict) -> str:
    rows = [["entity F1 (micro)", f"{scores['f1']:.4f}"],
            ["precision (micro)", f"{scores['precision']:.4f}"],
            ["recall (micro)", f"{scores['recall']:.4f}"],
            ["entity F1 (macro over types)", f"{scores['macro_f1']:.4f}"],
            ["token accuracy", f"{scores['accuracy']:.4f}"],
            ["sentences", f"{scores['num_examples']:,}"],
            ["gold entities", f"{scores['num_entities']:,}"],
            ["predicted entities", f"{scores['num_predicted']:,}"]]
    note = ("Strict IOB2 scoring (seqeval): a predicted entity counts only with the gold type and both boundaries; "
            "an `I-` tag that does not continue an entity of its type is no entity.")
    return "### Entity scores\n\n" + note + "\n\n" + _table(["metric", "value"], rows)


def _confusion_part(confusion: dict) -> str:
    labels = confusion["labels"]
    rows = [[label, *map(str, counts)] for label, counts in zip(labels, confusion["matrix"], strict=True)]
    note = (f"Entities matched by exact span. Rows are gold types, columns predicted types; `{NONE}` is a gold "
            "entity with no prediction of that span (missed, or a boundary error) or a prediction with no gold "
            "entity of that span.")
    return "### Entity type confusion\n\n" + note + "\n\n" + _table(["gold \\ predicted", *labels], rows)


def _errors_part(errors: dict, max_examples: int) -> str:
    counts = errors["counts"]
    rows = [[kind, str(counts.get(kind, 0)), ERROR_MEANINGS[kind]] for kind in ERROR_KINDS]
    parts = ["### Errors\n\n" + _table(["kind", "count", "meaning"], rows)]
    for kind in ERROR_KINDS:
        shown = errors["examples"].get(kind, [])[:max_examples]
        if shown:
            table = _table(["sentence", "gold", "predicted"], [_example_row(example) for example in shown])
            parts.append(f"#### {kind} ({counts.get(kind, 0)})\n\n{table}")
    return "\n\n".join(parts)


def _example_row(example: dict) -> list[str]:
    gold, predicted = example["gold"], example["predicted"]
    spans = [entity for entity in (gold, predicted) if entity is not None]
    start, end = min(e["start"] for e in spans), max(e["end"] for e in spans)
    return [_context(example["text"], start, end), _entity_cell(gold), _entity_cell(predicted)]


def _context(text: str, start: int, end: int, width: int = 40) -> str:
    """The sentence around a disagreement, the disputed stretch in 【】 (Markdown bold breaks next to CJK
    punctuation); long sentences are cut ``width`` characters either side."""
    before, after = text[max(0, start - width):start], text[end:end + width]
    head = "…" if start > width else ""
    tail = "…" if end + width < len(text) else ""
    return f"{head}{before}【{text[start:end]}】{after}{tail}"


def _entity_cell(entity: dict | None) -> str:
    return "—" if entity is None else f"{entity['text']} ({entity['type']})"


def _escape(text: str) -> str:
    """One table cell: whitespace collapsed (a newline would end the row) and Markdown's ASCII punctuation
    backslash-escaped; every other character, CJK included, is written as is."""
    text = " ".join(str(text).split())
    return "".join("\\" + char if char in _MARKDOWN else char for char in text)


_MARKDOWN = set("\\`*_[]<>|")


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; columns of numbers are right-aligned."""
    align = ["---:" if rows and all(_is_number(row[i]) for row in rows) else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(_escape(cell) for cell in header) + " |", "| " + " | ".join(align) + " |"]
    lines.extend("| " + " | ".join(cell if _is_number(cell) else _escape(cell) for cell in row) + " |" for row in rows)
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True
