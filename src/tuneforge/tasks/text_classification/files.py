"""Files in and out of a trained text classifier: texts to predict, labelled data to evaluate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tuneforge.data.readers import Example, read_examples, read_rows
from tuneforge.data.text import encode_targets
from tuneforge.errors import DataError, TuneforgeError
from tuneforge.tasks.classification import eval_dir, score, usable_examples, write_evaluation
from tuneforge.tasks.robustness import parse_perturbations, robustness, run_config
from tuneforge.tasks.text_classification.model import TextClassifier


def read_texts(path: Path, column: str, *, encoding: str | None = None,
               sheet: str | int | None = None) -> tuple[list[dict], list[str]]:
    """Every row of a file and its texts; unreadable rows or empty texts are an error naming the rows."""
    rows = read_rows(path, max_rows=None, strict=True, encoding=encoding, sheet=sheet)
    if column not in rows.columns:
        raise DataError(f"{path}: no column '{column}' (columns: {', '.join(rows.columns)}); pass --text-column")
    empty = [where for where, row in zip(rows.locations, rows.values, strict=True)
             if row.get(column) is None or not str(row[column]).strip()]
    if empty:
        shown = ", ".join(empty[:20]) + (f" and {len(empty) - 20} more" if len(empty) > 20 else "")
        raise DataError(f"{path}: empty text in column '{column}' at {shown}")
    return rows.values, [str(row[column]) for row in rows.values]


def evaluate_file(model: TextClassifier, path: Path, out: Path | None, text_column: str | None,
                  label_column: str | None, on_bad_rows: str = "error", force: bool = False, *,
                  encoding: str | None = None, sheet: str | int | None = None,
                  perturb: Sequence[str] = ()) -> tuple[dict, Path]:
    """Score a trained run on new labelled data and write the same report as training does; with ``perturb``
    (``"typos"``, ``"synonyms=0.2"``) also on the data after that noise (``tasks.robustness``)."""
    meta = model.meta
    out_dir = eval_dir(model.source, path, out, force)
    perturbations = parse_perturbations(perturb)
    result = read_examples(path, text_column or meta["text_column"], label_column or meta["label_column"],
                           multi_label=meta["multi_label"], label_separator=meta.get("label_separator", "|"),
                           encoding=encoding, sheet=sheet)
    examples, problems = usable_examples(result, meta["labels"], path, on_bad_rows)
    metrics, images, sections = evaluate_examples(model, examples, out_dir, perturbations)
    write_evaluation(out_dir, model.source, path, metrics, meta["labels"], len(examples), problems, images,
                     sections, encoding_note=result.encoding_note)
    return metrics, out_dir


def evaluate_examples(model: TextClassifier, examples: list[Example], out_dir: Path,
                      perturbations: list[tuple[str, float]]) -> tuple[dict, dict, dict]:
    """Metrics (robustness under ``perturbations`` included), images and report sections for ``examples``."""
    meta = model.meta
    targets = encode_targets([e.label for e in examples], meta["labels"], meta["multi_label"])

    def score_texts(texts: list[str]) -> dict:
        return score(model.predict_proba(texts), targets, model.labels, meta.get("thresholds"))

    texts = [e.text for e in examples]
    metrics = score_texts(texts)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, sections = {}, {}
    if hasattr(model, "extra_evaluation"):  # e.g. prompting: accuracy for each number of examples
        extra, sections, images = model.extra_evaluation(examples, out_dir)
        metrics |= extra
    if perturbations:
        metrics["robustness"], sections["Robustness"] = robustness(texts, perturbations, score_texts, metrics,
                                                                   keys=("accuracy", "macro_f1"))
    return metrics, images, sections


def evaluate_run(run_dir: str | Path, request) -> str:
    """``tuneforge eval`` for text classifiers (trained or prompted): the metrics table and the report's path.

    Without ``--data``, ``--perturb`` scores the run's own test split (reloaded from its config, same split)."""
    from tuneforge.tasks import load

    if request.data is None and request.perturb:
        return _evaluate_test_split(Path(run_dir), request)
    if request.data is None:
        raise TuneforgeError("--data is required: the labelled data (or text) to evaluate on")
    data = Path(request.data)
    out = eval_dir(Path(run_dir), data, request.out, request.force)  # refuses a bad --out before the model loads
    metrics, out_dir = evaluate_file(load(run_dir), data, out, request.text_column, request.label_column,
                                     request.on_bad_rows, request.force,
                                     encoding=request.encoding, sheet=request.sheet, perturb=request.perturb)
    return f"{_summary(metrics)}\n\nreport: {out_dir / 'report.md'}"


def _evaluate_test_split(run_dir: Path, request) -> str:
    from tuneforge.data.splits import load_splits
    from tuneforge.tasks import load

    perturbations = parse_perturbations(request.perturb)
    config = run_config(run_dir, "the labelled data")
    name = Path("test-split")
    out = eval_dir(run_dir, name, request.out, request.force)
    examples = load_splits(config.data, config.seed).test
    if not examples:
        raise TuneforgeError(f"{run_dir}: the run has no test split; pass --data with labelled data")
    model = load(run_dir)
    metrics, images, sections = evaluate_examples(model, examples, out, perturbations)
    write_evaluation(out, model.source, name, metrics, model.meta["labels"], len(examples), [], images, sections)
    return f"{_summary(metrics)}\n\nreport: {out / 'report.md'}"


def _summary(metrics: dict) -> str:
    """The metrics table, then one line per perturbation: its scores and their change from the clean ones."""
    from tuneforge.evaluation.metrics import format_metrics_table

    lines = [format_metrics_table(metrics)]
    for kind, row in metrics.get("robustness", {}).items():
        lines.append(f"{kind} (rate {row['rate']:g}): accuracy {row['accuracy']:.4f} ({row['accuracy_change']:+.4f}), "
                     f"macro F1 {row['macro_f1']:.4f} ({row['macro_f1_change']:+.4f})")
    return "\n".join(lines)
