"""Files in and out of a trained text classifier: texts to predict, labelled data to evaluate."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tuneforge.data.readers import ReadResult, read_columns, read_examples
from tuneforge.data.splits import only_known_labels
from tuneforge.data.text import encode_targets
from tuneforge.data.validation import check_unseen_labels, count_bad_rows, format_problems
from tuneforge.errors import DataError, TuneforgeError
from tuneforge.evaluation.plots import plot_confusion_matrix
from tuneforge.evaluation.report import write_report
from tuneforge.tasks.text_classification import score
from tuneforge.tasks.text_classifier import Prediction, TextClassifier

if TYPE_CHECKING:
    from tuneforge.tasks.prompt_classification import PromptClassifier


def read_texts(path: Path, column: str) -> tuple[list[dict], list[str]]:
    """Every row of a file and its texts; unreadable rows or empty texts are an error naming the rows."""
    columns, rows = read_columns(path, max_rows=None, strict=True)
    if column not in columns:
        raise DataError(f"{path}: no column '{column}' (columns: {', '.join(columns)}); pass --text-column")
    empty = [i + 1 for i, row in enumerate(rows) if row.get(column) is None or not str(row[column]).strip()]
    if empty:
        shown = ", ".join(map(str, empty[:20])) + (f" and {len(empty) - 20} more" if len(empty) > 20 else "")
        raise DataError(f"{path}: empty text in column '{column}' at data row(s) {shown}")
    return rows, [str(row[column]) for row in rows]


def check_output(out: Path, source: Path | None, force: bool, suffix: str = ".csv") -> None:
    """Never overwrite the input, nor (without --force) an existing file: nothing saved gets damaged."""
    if out.suffix.lower() != suffix:
        kind = {".csv": "predictions are written as CSV", ".jsonl": "generations are written as JSON Lines"}[suffix]
        raise TuneforgeError(f"--out {out}: {kind}; use a {suffix} file name")
    if source is not None and out.resolve() == source.resolve():
        raise TuneforgeError(f"--out {out} is the input file; choose another name")
    if out.exists() and not force:
        raise TuneforgeError(f"{out} exists; pass --force to overwrite it")


def write_predictions(out: Path, rows: list[dict], predictions: list[Prediction]) -> None:
    """The input rows plus ``predicted_label`` and one ``prob_<label>`` column per label, as CSV."""
    out.parent.mkdir(parents=True, exist_ok=True)
    labels = list(predictions[0].probabilities) if predictions else []
    fields = list(rows[0]) if rows else []
    header = fields + ["predicted_label"] + [f"prob_{label}" for label in labels]
    partial = out.with_name(out.name + ".partial")  # never leave a half-written file under the real name
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row, prediction in zip(rows, predictions, strict=True):
            label = prediction.label if isinstance(prediction.label, str) else "|".join(prediction.label)
            probs = [f"{prediction.probabilities[name]:.6f}" for name in labels]
            writer.writerow([row.get(f) for f in fields] + [label] + probs)
    partial.replace(out)


def evaluate_file(model: TextClassifier | PromptClassifier, path: Path, out: Path | None, text_column: str | None,
                  label_column: str | None, on_bad_rows: str = "error", force: bool = False) -> tuple[dict, Path]:
    """Score a trained run on new labelled data and write the same report as training does."""
    meta = model.meta
    out_dir = eval_dir(model.source, path, out, force)
    result = read_examples(path, text_column or meta["text_column"], label_column or meta["label_column"],
                           multi_label=meta["multi_label"], label_separator=meta.get("label_separator", "|"))
    examples, problems = usable_examples(result, meta["labels"], path, on_bad_rows)

    probs = model.predict_proba([e.text for e in examples])
    targets = encode_targets([e.label for e in examples], meta["labels"], meta["multi_label"])
    metrics = score(probs, targets, model.labels, meta.get("thresholds"))
    out_dir.mkdir(parents=True, exist_ok=True)
    images, sections = {}, {}
    if hasattr(model, "extra_evaluation"):  # e.g. prompting: accuracy for each number of examples
        extra, sections, images = model.extra_evaluation(examples, out_dir)
        metrics |= extra
    write_evaluation(out_dir, model.source, path, metrics, meta["labels"], len(examples), problems, images,
                     sections)
    return metrics, out_dir


def usable_examples(result: ReadResult, labels: list[str], path: Path, on_bad_rows: str,
                    unit: str = "rows") -> tuple[list, list]:
    """The rows a trained model can be scored on (and every problem): bad rows and labels it never learnt
    stop the evaluation, or are left out under ``on_bad_rows: skip``."""
    problems = result.problems + check_unseen_labels(set(labels), result.examples, "evaluation", str(path))
    if problems and on_bad_rows == "error":
        raise DataError(format_problems(problems, result.total_rows))
    examples = only_known_labels(result.examples, set(labels))
    if not examples:
        raise DataError(f"{path}: no usable labelled {unit} to evaluate")
    return examples, problems


def write_evaluation(out_dir: Path, source: Path, data: Path, metrics: dict, labels: list[str], evaluated: int,
                     problems: list, images: dict[str, str], sections: dict[str, str], unit: str = "rows") -> None:
    """``metrics.json`` and ``report.md`` of an evaluation on new data, with its confusion matrix plotted."""
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    if "confusion_matrix" in metrics:
        matrix = plot_confusion_matrix(metrics["confusion_matrix"], labels, out_dir / "confusion_matrix.png")
        images = {"Confusion matrix": str(matrix)} | images
    skipped = count_bad_rows(problems)
    notes = [f"{evaluated:,} {unit} evaluated from {data}."] + ([f"{skipped:,} bad {unit} skipped."] if skipped else [])
    write_report(out_dir / "report.md", title=f"Evaluation on {data.name}",
                 summary={"model": str(source), "data": str(data)}, metrics=metrics,
                 data_notes=notes, images=images, extra_sections=sections)


def eval_dir(source: Path, data: Path, out: Path | None = None, force: bool = False) -> Path:
    """``out``, unless it holds a report already (and no ``force``); by default a new folder beside the model
    (``source``): RUN/eval-<data>-<timestamp>."""
    if out is not None:
        if (out / "report.md").exists() and not force:
            raise TuneforgeError(f"{out} already holds a report; pass --force to overwrite it")
        return out
    run_dir = source.parent if source.name == "model" else source
    return run_dir / f"eval-{data.stem or data.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def evaluate_run(run_dir: str | Path, request) -> str:
    """``tuneforge eval`` for text classifiers (trained or prompted): the metrics table and the report's path."""
    from tuneforge.evaluation.metrics import format_metrics_table
    from tuneforge.tasks import load

    if request.data is None:
        raise TuneforgeError("--data is required: the labelled data (or text) to evaluate on")
    metrics, out_dir = evaluate_file(load(run_dir), Path(request.data), request.out, request.text_column,
                                     request.label_column, request.on_bad_rows, request.force)
    return f"{format_metrics_table(metrics)}\n\nreport: {out_dir / 'report.md'}"
