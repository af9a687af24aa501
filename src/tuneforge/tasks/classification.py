"""What every classification task shares: label spaces, losses, decisions and scores, predictions, and the files
of predicting and evaluating on new data (text, image and prompt classification alike)."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tuneforge.data.excel import check_cells, write_workbook
from tuneforge.data.readers import ReadResult
from tuneforge.data.splits import only_known_labels
from tuneforge.data.validation import check_unseen_labels, count_bad_rows, format_problems
from tuneforge.errors import ConfigError, DataError, TuneforgeError
from tuneforge.evaluation.metrics import classification_metrics, multilabel_metrics
from tuneforge.evaluation.plots import plot_confusion_matrix
from tuneforge.evaluation.report import write_report

# --------------------------------------------------------------------------- labels, losses, scores


LogitsFn = Callable[[nn.Module, dict], torch.Tensor]


@dataclass
class LabelSpace:
    names: list[str]
    multi_label: bool


def check_metric(metric: str, labels: LabelSpace) -> None:
    """Refuse an unknown ``eval.metric`` before training, not at the first evaluation."""
    if labels.multi_label:  # the metric names come from the metric functions themselves
        sample = multilabel_metrics(np.eye(2, dtype=int), np.eye(2, dtype=int), ["a", "b"])
    else:
        sample = classification_metrics([0, 1], [0, 1], ["a", "b"])
    available = [k for k, v in sample.items() if isinstance(v, float)] + ["loss"]
    if metric not in available:
        raise ConfigError(f"eval.metric: unknown metric '{metric}'; available: {', '.join(available)}")


def make_loss(labels: LabelSpace, weight_targets: torch.Tensor | None, logits_of: LogitsFn):
    """Cross-entropy (single-label) or BCE (multi-label), optionally weighted by inverse frequency."""
    if labels.multi_label:
        pos_weight = None
        if weight_targets is not None:
            positives = weight_targets.sum(0).clamp(min=1)
            pos_weight = (len(weight_targets) - positives) / positives
        criterion: nn.Module = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    else:
        weight = None
        if weight_targets is not None:
            counts = torch.bincount(weight_targets, minlength=len(labels.names)).float().clamp(min=1)
            weight = counts.sum() / (len(counts) * counts)
        criterion = nn.CrossEntropyLoss(weight=weight)

    def loss_fn(model: nn.Module, batch: dict) -> torch.Tensor:
        logits = logits_of(model, batch)
        # .to() is a no-op after the first call; the class weights follow the model to its device
        return criterion.to(logits.device)(logits.float(), batch["labels"].to(logits.device))

    return loss_fn


def decide(probs: np.ndarray, multi_label: bool, thresholds: list[float] | None) -> np.ndarray:
    """Predicted class ids (N,) or multi-hot rows (N, L); a label is on when prob >= its threshold."""
    if not multi_label:
        return probs.argmax(axis=1)
    limits = np.asarray(thresholds if thresholds is not None else [0.5] * probs.shape[1])
    return (probs >= limits).astype(int)


def predictions_from(probs: np.ndarray, labels: LabelSpace, thresholds: list[float] | None) -> list[Prediction]:
    """One ``Prediction`` per row of ``probs``: the decided label(s) and every label's probability."""
    decided = decide(probs, labels.multi_label, thresholds)
    names, predictions = labels.names, []
    for row, choice in zip(probs, decided, strict=True):
        label = [names[i] for i in np.flatnonzero(choice)] if labels.multi_label else names[int(choice)]
        predictions.append(Prediction(label, {n: float(p) for n, p in zip(names, row, strict=True)}))
    return predictions


def score(probs: np.ndarray, targets: torch.Tensor, labels: LabelSpace, thresholds: list[float] | None) -> dict:
    predicted = decide(probs, labels.multi_label, thresholds)
    if labels.multi_label:
        return multilabel_metrics(targets.numpy().astype(int), predicted, labels.names)
    return classification_metrics(targets.tolist(), predicted.tolist(), labels.names)


def loss_from_probs(probs: np.ndarray, targets: torch.Tensor, labels: LabelSpace) -> float:
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    if labels.multi_label:
        t = targets.numpy()
        return float(-(t * np.log(p) + (1 - t) * np.log(1 - p)).mean())
    return float(-np.log(p[np.arange(len(p)), targets.numpy()]).mean())


@dataclass
class Prediction:
    label: str | list[str]  # one label, or the list of labels over their thresholds (multi-label)
    probabilities: dict[str, float]


# --------------------------------------------------------------------------- files of new data


# Where each kind of output goes: CSV is written as UTF-8 with a byte-order mark, the one form of UTF-8 that
# Excel on a Chinese (or any) Windows opens without mojibake; pandas and tuneforge read it back unchanged.
OUTPUT_KINDS = {".csv": "CSV", ".xlsx": "an Excel workbook", ".jsonl": "JSON Lines"}
CSV_ENCODING = "utf-8-sig"


def check_output(out: Path, source: Path | None, force: bool, suffixes: tuple[str, ...] = (".csv", ".xlsx")) -> None:
    """Never overwrite the input (not even with --force), nor without --force an existing file."""
    if out.suffix.lower() not in suffixes:
        kinds = " or ".join(f"{suffix} ({OUTPUT_KINDS[suffix]})" for suffix in suffixes)
        raise TuneforgeError(f"--out {out}: use a file name ending in {kinds}")
    if source is not None and same_path(out, source):
        raise TuneforgeError(f"--out {out} is the input file; choose another name (--force never overwrites the "
                             "input)")
    if out.is_dir():
        raise TuneforgeError(f"--out {out} is a folder; give a file name")
    if out.exists() and not force:
        raise TuneforgeError(f"{out} exists; pass --force to overwrite it")


def same_path(one: Path, other: Path) -> bool:
    """Whether two paths name the same file or folder (also through links, or case on case-blind disks)."""
    if one.resolve() == other.resolve():
        return True
    try:
        return one.exists() and other.exists() and one.samefile(other)
    except OSError:
        return False


def write_predictions(out: Path, rows: list[dict], predictions: list[Prediction]) -> None:
    """The input rows plus ``predicted_label`` and one ``prob_<label>`` column per label: an Excel workbook for
    ``.xlsx``, else CSV in UTF-8 with a byte-order mark."""
    header, table = prediction_table(rows, predictions)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")  # never leave a half-written file under the real name
    if out.suffix.lower() == ".xlsx":
        write_workbook(partial, header, table)
    else:
        with partial.open("w", newline="", encoding=CSV_ENCODING) as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows([[f"{v:.6f}" if isinstance(v, float) else v for v in row] for row in table])
    partial.replace(out)


def prediction_table(rows: list[dict], predictions: list[Prediction] | None) -> tuple[list[str], list[list]]:
    """Header and rows of the predictions file; without ``predictions``, the input part only (to check it
    fits the output before any work)."""
    labels = list(predictions[0].probabilities) if predictions else []
    fields = list(rows[0]) if rows else []
    header = fields + ["predicted_label"] + [f"prob_{label}" for label in labels]
    table = []
    for index, row in enumerate(rows):
        cells = [row.get(f) for f in fields]
        if predictions is not None:
            prediction = predictions[index]
            label = prediction.label if isinstance(prediction.label, str) else "|".join(prediction.label)
            cells += [label] + [float(prediction.probabilities[name]) for name in labels]
        table.append(cells)
    return header, table


def check_prediction_rows(out: Path, rows: list[dict]) -> None:
    """Before any work: refuse input an Excel output cannot hold (CSV holds anything)."""
    if out.suffix.lower() == ".xlsx":
        check_cells(prediction_table(rows, None)[1], out)


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
                     problems: list, images: dict[str, str], sections: dict[str, str], unit: str = "rows",
                     encoding_note: str | None = None) -> None:
    """``metrics.json`` and ``report.md`` of an evaluation on new data, with its confusion matrix plotted;
    ``encoding_note`` ("read test.csv as GB18030 (detected)") joins the data notes."""
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    if "confusion_matrix" in metrics:
        matrix = plot_confusion_matrix(metrics["confusion_matrix"], labels, out_dir / "confusion_matrix.png")
        images = {"Confusion matrix": str(matrix)} | images
    skipped = count_bad_rows(problems)
    notes = [f"{evaluated:,} {unit} evaluated from {data}."] + ([f"{skipped:,} bad {unit} skipped."] if skipped else [])
    notes += [f"{encoding_note[0].upper()}{encoding_note[1:]}."] if encoding_note else []
    write_report(out_dir / "report.md", title=f"Evaluation on {data.name}",
                 summary={"model": str(source), "data": str(data)}, metrics=metrics,
                 data_notes=notes, images=images, extra_sections=sections)


def eval_dir(source: Path, data: Path, out: Path | None = None, force: bool = False) -> Path:
    """Where an evaluation writes: ``out``, checked by :func:`check_eval_out`, or by default a new folder beside
    the model (``source``): RUN/eval-<data>-<timestamp>, which never holds the run's own files."""
    run_dir = source.parent if source.name == "model" else source
    if out is not None:
        check_eval_out(out, run_dir, data, force)
        return out
    return run_dir / f"eval-{data.stem or data.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_eval_out(out: Path, run_dir: Path, data: Path, force: bool) -> None:
    """Before any work, refuse an ``--out`` whose writing would damage something: the data, any file, a run's
    own folder (its report.md, metrics.json and plots; --force does not change that), the data folder, or an
    earlier report (without --force)."""
    if same_path(out, data) or (out.exists() and not out.is_dir()):
        what = "the data file you evaluate on" if same_path(out, data) else "an existing file"
        raise TuneforgeError(f"--out {out} is {what}; --out names a folder for the report, e.g. --out "
                             f"{out.with_suffix('')}-eval")
    resolved, model_dir = out.resolve(), (run_dir / "model").resolve()
    if resolved == run_dir.resolve() or _holds_run(out) or model_dir in (resolved, *resolved.parents):
        raise TuneforgeError(f"--out {out} is a run's own folder: its report.md, metrics.json and plots would be "
                             f"replaced (--force does not allow that). Choose a new folder, or leave --out out to "
                             f"write to {run_dir / 'eval-<data>-<time>'}")
    if data.is_dir() and (resolved == data.resolve() or data.resolve() in resolved.parents):
        raise TuneforgeError(f"--out {out} is inside the data folder {data}: the report's images would become part "
                             "of the data. Choose a folder outside it")
    if (out / "report.md").exists() and not force:
        raise TuneforgeError(f"{out} already holds a report; pass --force to overwrite it")


def _holds_run(folder: Path) -> bool:
    return (folder / "tuneforge.json").is_file() or (folder / "model" / "tuneforge.json").is_file()
