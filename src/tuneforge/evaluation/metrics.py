"""Evaluation metrics for single-label and multi-label classification.

Everything returned here is plain Python (floats, ints, lists, dicts) so it can be written to
``metrics.json`` with ``json.dumps`` and read back without numpy. The computation itself is left to
scikit-learn; this module only chooses the arguments and reshapes the results.

Key names are shared between the two task kinds (``accuracy``, ``macro_f1``, ``weighted_f1``, ...)
so a config can say ``eval.metric: macro_f1`` whichever kind of classifier it trains.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
)

DEFAULT_THRESHOLD = 0.5
DEFAULT_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], label_names: list[str]) -> dict:
    """Metrics for single-label classification.

    Macro and weighted averages follow scikit-learn's defaults: they average over the label ids
    that occur in ``y_true`` or ``y_pred``, so a class absent from a small validation split does
    not drag the macro score down with a meaningless 0. ``per_class`` and ``confusion_matrix``
    still cover every label id ``0..len(label_names) - 1``.

    Args:
        y_true: Gold label ids.
        y_pred: Predicted label ids, same length as ``y_true``.
        label_names: Name of each label id; defines the full label set.

    Returns:
        A JSON-serialisable dict with ``accuracy``, ``macro_*``, ``weighted_*`` (precision, recall,
        f1), ``num_examples``, ``per_class`` (name -> precision/recall/f1/support),
        ``confusion_matrix`` (rows = true, columns = predicted) and ``labels``.

    Raises:
        ValueError: If the inputs are empty, differ in length, or hold ids outside the label set.
    """
    true = np.asarray(y_true, dtype=int).ravel()
    pred = np.asarray(y_pred, dtype=int).ravel()
    _check_single_label(true, pred, len(label_names))
    all_ids = list(range(len(label_names)))

    result: dict = {"accuracy": float(accuracy_score(true, pred))}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(true, pred, average=average, zero_division=0)
        result[f"{average}_precision"] = float(precision)
        result[f"{average}_recall"] = float(recall)
        result[f"{average}_f1"] = float(f1)
    result["num_examples"] = int(true.size)
    result["per_class"] = _per_class(true, pred, label_names, labels=all_ids)
    result["confusion_matrix"] = confusion_matrix(true, pred, labels=all_ids).astype(int).tolist()
    result["labels"] = list(label_names)
    return result


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str]) -> dict:
    """Metrics for multi-label classification on (N, L) 0/1 indicator arrays.

    Macro averages cover every label column, as scikit-learn does for indicator input.

    Args:
        y_true: Gold indicators, shape (N, L).
        y_pred: Predicted indicators, shape (N, L).
        label_names: Name of each of the L columns.

    Returns:
        A JSON-serialisable dict with ``subset_accuracy`` (also as ``accuracy``), ``micro_*`` and
        ``macro_*`` precision/recall/f1, ``weighted_f1``, ``hamming_loss``, ``num_examples``,
        ``per_class`` (support = number of positives) and ``labels``.

    Raises:
        ValueError: If the arrays are empty, differ in shape, or do not have L columns.
    """
    true = _as_indicator(y_true, "y_true")
    pred = _as_indicator(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true has shape {true.shape} but y_pred has shape {pred.shape}")
    if true.shape[1] != len(label_names):
        raise ValueError(f"arrays have {true.shape[1]} label columns but {len(label_names)} label names were given")

    subset_accuracy = float(accuracy_score(true, pred))
    result: dict = {"subset_accuracy": subset_accuracy, "accuracy": subset_accuracy}
    for average in ("micro", "macro"):
        precision, recall, f1, _ = precision_recall_fscore_support(true, pred, average=average, zero_division=0)
        result[f"{average}_f1"] = float(f1)
        result[f"{average}_precision"] = float(precision)
        result[f"{average}_recall"] = float(recall)
    result["weighted_f1"] = float(f1_score(true, pred, average="weighted", zero_division=0))
    result["hamming_loss"] = float(hamming_loss(true, pred))
    result["num_examples"] = int(true.shape[0])
    result["per_class"] = _per_class(true, pred, label_names, labels=None)
    result["labels"] = list(label_names)
    return result


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, grid: Sequence[float] | None = None) -> list[float]:
    """Pick a decision threshold per label that maximises that label's F1 on validation data.

    A label is predicted positive when ``prob >= threshold``. Among thresholds with the same F1 the
    one closest to 0.5 wins, so a flat F1 curve does not push the threshold to an extreme. A label
    with no positives in ``y_true`` keeps 0.5: there is nothing to fit it to.

    Args:
        y_true: Gold indicators, shape (N, L) (or (N,) for a single label).
        probs: Predicted probabilities, same shape as ``y_true``.
        grid: Candidate thresholds; defaults to 0.05, 0.10, ..., 0.95.

    Returns:
        One threshold per label, as plain floats.

    Raises:
        ValueError: If the shapes differ, the data is empty, or the grid is empty.
    """
    true = _as_indicator(y_true, "y_true")
    scores = np.asarray(probs, dtype=float)
    scores = scores.reshape(-1, 1) if scores.ndim == 1 else scores
    if true.shape != scores.shape:
        raise ValueError(f"y_true has shape {true.shape} but probs has shape {scores.shape}")
    candidates = [float(t) for t in (DEFAULT_GRID if grid is None else grid)]
    if not candidates:
        raise ValueError("threshold grid is empty")

    # One sklearn call per candidate scores every label at once: shape (len(grid), L).
    f1_by_threshold = np.stack(
        [f1_score(true, (scores >= t).astype(int), average=None, zero_division=0) for t in candidates]
    )
    has_positives = true.sum(axis=0) > 0
    return [
        _best_threshold(candidates, f1_by_threshold[:, j]) if has_positives[j] else DEFAULT_THRESHOLD
        for j in range(true.shape[1])
    ]


def label_distribution(labels_per_split: dict[str, list[str | list[str]]]) -> dict[str, dict[str, int]]:
    """Count how often each label occurs in each split.

    A multi-label row (a list of labels) counts once for each distinct label it carries. Every split
    lists every label seen anywhere (0 where absent), in one shared order: most frequent in
    ``train`` first, then by total count, then by name. Without a ``train`` split the first split
    plays its part.

    Args:
        labels_per_split: Split name -> one entry per row, either a label or a list of labels.

    Returns:
        Split name -> (label -> count), in the input's split order.
    """
    counts = {split: _count_labels(rows) for split, rows in labels_per_split.items()}
    if not counts:
        return {}
    reference = counts.get("train", next(iter(counts.values())))
    totals: Counter[str] = Counter()
    for split_counts in counts.values():
        totals.update(split_counts)
    order = sorted(totals, key=lambda label: (-reference.get(label, 0), -totals[label], label))
    return {
        split: {label: int(split_counts.get(label, 0)) for label in order} for split, split_counts in counts.items()
    }


def format_metrics_table(metrics: dict) -> str:
    """A short aligned plain-text summary of a metrics dict, for printing after training.

    Works for the output of both :func:`classification_metrics` and :func:`multilabel_metrics`.

    Args:
        metrics: A metrics dict from this module.

    Returns:
        Headline metrics followed by a per-class precision/recall/F1/support table.
    """
    lines = [f"{name:<{_HEADLINE_WIDTH}}  {value}" for name, value in headline_metrics(metrics)]
    per_class = metrics.get("per_class") or metrics.get("per_type") or {}
    if per_class:
        name_width = max(len("label"), *(len(str(name)) for name in per_class))
        lines.append("")
        lines.append(f"{'label':<{name_width}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>9}")
        for name, row in per_class.items():
            lines.append(
                f"{str(name):<{name_width}}  {row['precision']:>9.3f}  {row['recall']:>9.3f}  "
                f"{row['f1']:>9.3f}  {int(row['support']):>9d}"
            )
    return "\n".join(lines)


def headline_metrics(metrics: dict) -> list[tuple[str, str]]:
    """The few numbers worth showing first, as (display name, formatted value) pairs.

    Shared by the terminal table and the Markdown report so both show the same headline.

    Args:
        metrics: A metrics dict from :func:`classification_metrics` or :func:`multilabel_metrics`.

    Returns:
        Pairs for the keys present in ``metrics``, in a fixed order.
    """
    keys = _MULTILABEL_HEADLINE if "subset_accuracy" in metrics else _SINGLE_LABEL_HEADLINE
    if "perplexity" in metrics:
        keys = _LANGUAGE_MODEL_HEADLINE
    if "num_entities" in metrics:
        keys = _ENTITY_HEADLINE
    pairs = []
    for key, display in keys:
        if key in metrics:
            value = metrics[key]
            counted = key in ("num_examples", "tokens", "num_entities")
            pairs.append((display, f"{int(value):,}" if counted else f"{float(value):.4f}"))
    return pairs


_LANGUAGE_MODEL_HEADLINE = (
    ("perplexity", "perplexity"),
    ("perplexity_before", "perplexity before training"),
    ("loss", "loss (nats/token)"),
    ("tokens", "tokens scored"),
)

_ENTITY_HEADLINE = (
    ("f1", "entity F1 (micro)"),
    ("precision", "entity precision"),
    ("recall", "entity recall"),
    ("macro_f1", "macro F1 (over types)"),
    ("num_examples", "sentences"),
    ("num_entities", "entities"),
)

_SINGLE_LABEL_HEADLINE = (
    ("accuracy", "accuracy"),
    ("macro_f1", "macro F1"),
    ("weighted_f1", "weighted F1"),
    ("num_examples", "examples"),
)
_MULTILABEL_HEADLINE = (
    ("subset_accuracy", "subset accuracy"),
    ("micro_f1", "micro F1"),
    ("macro_f1", "macro F1"),
    ("weighted_f1", "weighted F1"),
    ("hamming_loss", "hamming loss"),
    ("num_examples", "examples"),
)
_HEADLINE_WIDTH = max(len(display) for _, display in _SINGLE_LABEL_HEADLINE + _MULTILABEL_HEADLINE)


def _check_single_label(true: np.ndarray, pred: np.ndarray, num_labels: int) -> None:
    """Fail early with a readable message instead of sklearn's shape errors deep inside."""
    if true.size != pred.size:
        raise ValueError(f"y_true has {true.size} items but y_pred has {pred.size}")
    if true.size == 0:
        raise ValueError("cannot compute metrics on zero examples")
    for name, ids in (("y_true", true), ("y_pred", pred)):
        if ids.min() < 0 or ids.max() >= num_labels:
            raise ValueError(f"{name} holds label ids outside 0..{num_labels - 1}")


def _as_indicator(array: np.ndarray, name: str) -> np.ndarray:
    """Coerce to a 2-D int indicator matrix; a 1-D array is one label column."""
    matrix = np.asarray(array)
    if matrix.ndim == 1:
        matrix = matrix.reshape(-1, 1)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, L) array, got shape {matrix.shape}")
    return matrix.astype(int)


def _per_class(true: np.ndarray, pred: np.ndarray, label_names: list[str], labels: list[int] | None) -> dict:
    """Per-label precision/recall/f1/support as plain Python numbers, keyed by label name."""
    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=labels, average=None, zero_division=0
    )
    return {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(label_names, precision, recall, f1, support, strict=True)
    }


def _best_threshold(candidates: list[float], f1_values: np.ndarray) -> float:
    """Highest F1; among (near-)equal F1s the candidate closest to 0.5."""
    best = float(np.max(f1_values))
    tied = [t for t, f in zip(candidates, f1_values, strict=True) if np.isclose(f, best, rtol=0.0, atol=1e-12)]
    return min(tied, key=lambda t: (abs(t - DEFAULT_THRESHOLD), t))


def _count_labels(rows: list[str | list[str]]) -> Counter[str]:
    """Count labels in one split; a multi-label row counts each distinct label once."""
    counts: Counter[str] = Counter()
    for row in rows:
        if isinstance(row, list | tuple | set):
            counts.update(set(row))
        elif row is not None:
            counts[row] += 1
    return counts
