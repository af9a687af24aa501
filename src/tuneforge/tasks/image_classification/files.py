"""Files in and out of a trained image classifier: images to predict, labelled images to evaluate."""

from __future__ import annotations

from pathlib import Path

from tuneforge.config import DataConfig
from tuneforge.data.images import IMAGE_SUFFIXES, check_image_file, read_images, split_folders
from tuneforge.data.readers import read_rows
from tuneforge.data.text import encode_targets
from tuneforge.errors import DataError, TuneforgeError
from tuneforge.tasks.classification import eval_dir, score, usable_examples, write_evaluation
from tuneforge.tasks.image_classification.model import ImageClassifierModel
from tuneforge.tasks.image_classification.recipe import image_report

MAX_LISTED = 20


def images_in(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (recursively), in a stable order."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))
    if not found:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return found


def images_from_table(table: Path, column: str, *, encoding: str | None = None,
                      sheet: str | int | None = None) -> list[Path]:
    """The image paths a CSV/JSONL/Parquet/Excel file lists in ``column`` (relative to the file)."""
    rows = read_rows(table, max_rows=None, strict=True, encoding=encoding, sheet=sheet)
    if column not in rows.columns:
        raise DataError(f"{table}: no column '{column}' (columns: {', '.join(rows.columns)}); pass --image-column")
    paths = []
    for where, row in zip(rows.locations, rows.values, strict=True):
        value = str(row.get(column) or "").strip()
        if not value:
            raise DataError(f"{table}, {where}: empty image path in column '{column}'")
        path = Path(value).expanduser()
        paths.append(path if path.is_absolute() else table.parent / path)
    return paths


def checked_images(paths: list[Path], skip_bad: bool) -> tuple[list[Path], list[str]]:
    """The readable images, and one line per bad one; without ``skip_bad`` any bad image is an error."""
    bad = []
    good = []
    for path in paths:
        verdict = check_image_file(str(path))
        if verdict is None:
            good.append(path)
        else:
            bad.append(f"{path}: {verdict[1]}")
    if bad and not skip_bad:
        shown = "\n  ".join(bad[:MAX_LISTED]) + (f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED
                                                  else "")
        raise DataError(f"{len(bad)} of {len(paths)} images cannot be used:\n  {shown}\n"
                        "Fix or remove them, or pass --on-bad-rows skip to predict the others.")
    return good, bad


def evaluate_images(model: ImageClassifierModel, path: Path, out: Path | None, image_column: str | None,
                    label_column: str | None, on_bad_rows: str = "error", force: bool = False) -> tuple[dict, Path]:
    """Score a trained image run on new labelled images (folder, table or IDX); the training report's contents."""
    meta = model.meta
    out_dir = eval_dir(model.source, path, out, force)
    data = DataConfig(dataset=None, train_file=str(path), image_column=image_column or meta["image_column"],
                      label_column=label_column or meta["label_column"])
    splits = split_folders(path) if path.is_dir() else {}
    if splits:  # a dataset laid out by split: evaluate its test/ part
        if "test" not in splits:
            raise DataError(f"{path}: laid out by split but has no test/ folder; pass the folder to evaluate")
        path = splits["test"]
    class_names = meta.get("idx_class_names")
    result = read_images(path, data, class_names=tuple(class_names) if class_names else None)
    examples, problems = usable_examples(result, meta["labels"], path, on_bad_rows, unit="images")

    probs = model.predict_proba([e.image for e in examples])
    targets = encode_targets([e.label for e in examples], meta["labels"], False)
    metrics = score(probs, targets, model.labels, None)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, sections = image_report(examples, probs, metrics, meta["labels"], out_dir, "evaluation")
    write_evaluation(out_dir, model.source, path, metrics, meta["labels"], len(examples), problems, images,
                     sections, unit="images")
    return metrics, out_dir


def evaluate_run(run_dir: str | Path, request) -> str:
    """``tuneforge eval`` for image classifiers: the metrics table and the report's path."""
    from tuneforge.evaluation.metrics import format_metrics_table
    from tuneforge.tasks import load

    if request.data is None:
        raise TuneforgeError("--data is required: the labelled data (or text) to evaluate on")
    metrics, out_dir = evaluate_images(load(run_dir), Path(request.data), request.out, request.image_column,
                                       request.label_column, request.on_bad_rows, request.force)
    return f"{format_metrics_table(metrics)}\n\nreport: {out_dir / 'report.md'}"
