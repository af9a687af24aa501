"""Finishing a run: metrics.json, history, training curves and report.md, written the same way for every task.

``write_run`` is the one finisher: a task hands over its metrics and a ``RunReport`` (summary, headline metrics,
notes, data warnings, its own images and sections, its next-step lines) and gets the files every run has, so a run
folder looks the same whatever trained it. ``finish_run`` builds that report for classifiers (label distribution,
confusion matrix, thresholds, and the data warnings its splits carry).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.config import Config
from tuneforge.evaluation.metrics import label_distribution
from tuneforge.evaluation.plots import plot_confusion_matrix, plot_label_distribution, plot_training_curves
from tuneforge.evaluation.report import write_report
from tuneforge.methods import describe_trainable
from tuneforge.runs.directories import Run


@dataclass
class RunReport:
    """What a task says about its finished run in report.md."""

    summary: dict[str, str]
    headline: dict  # the metrics shown first (test split, else validation)
    notes: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # caption -> PNG path, after the training curves
    sections: dict[str, str] = field(default_factory=dict)
    usage: list[str] = field(default_factory=list)  # next-step commands (``Task.usage``)
    distribution: dict | None = None  # classifiers: examples per label and split
    warnings: list[str] = field(default_factory=list)  # data warnings (the splits' ``warnings``)


def write_run(run_dir: Path, config: Config, metrics: dict, history: list[dict] | None, report: RunReport) -> Run:
    """metrics.json (with the task and the data warnings), history.jsonl and the training curves (for runs that
    trained), report.md with a "Data warnings" section first (when there are any) and "Reproduce and use" last;
    returns the Run."""
    metrics = {"task": config.task, **metrics, "data_warnings": list(report.warnings)}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    images = {}
    if history is not None:
        (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")
        curves = plot_training_curves(history, run_dir / "training_curves.png", metric=config.eval.metric)
        images["Training curves"] = str(curves)
    sections = report.sections | {"Reproduce and use": "\n".join(
        ["```bash", f"tuneforge train {run_dir}/config.yaml   # the same run again", *report.usage, "```"])}
    write_report(run_dir / "report.md", title=f"tuneforge run {run_dir.name}", summary=report.summary,
                 metrics=report.headline, distribution=report.distribution, data_notes=report.notes,
                 data_warnings=report.warnings, images=images | report.images, extra_sections=sections)
    return Run(run_dir, metrics)


def finish_run(run_dir: Path, config: Config, splits, label_names: list[str], evaluation: dict[str, dict],
               history: list[dict], extras: dict, images: dict[str, str] | None = None,
               sections: dict[str, str] | None = None, usage: list[str] | None = None) -> Run:
    """A classifier's run: its metrics, label distribution and confusion matrix, plus the task's own ``images``
    and ``sections`` and its next-step ``usage`` lines."""
    headline = evaluation.get("test") or evaluation["validation"]
    distribution = label_distribution(
        {"train": [e.label for e in splits.train], "validation": [e.label for e in splits.validation],
         "test": [e.label for e in splits.test]}
    )
    report = RunReport(
        summary=run_summary(config, extras, splits), headline=headline, notes=data_notes(splits),
        images=_plots(run_dir, headline, label_names, distribution) | (images or {}),
        sections=(sections or {}) | _classifier_sections(evaluation), usage=usage or [], distribution=distribution,
        warnings=list(splits.warnings),
    )
    return write_run(run_dir, config, {**evaluation, **extras, "labels": label_names}, history, report)


def _plots(run_dir: Path, headline: dict, labels: list[str], distribution: dict) -> dict[str, str]:
    images = {}
    if "confusion_matrix" in headline:
        images["Confusion matrix"] = plot_confusion_matrix(headline["confusion_matrix"], labels,
                                                           run_dir / "confusion_matrix.png")
    images["Label distribution"] = plot_label_distribution(distribution, run_dir / "label_distribution.png")
    return {caption: str(path) for caption, path in images.items()}


def run_summary(config: Config, extras: dict, splits) -> dict[str, str]:
    fit = extras["fit"]
    trainable, total = extras["trainable_parameters"], extras["total_parameters"]
    return {
        "task": config.task,
        "model": config.model.name,
        "method": config.method.name,
        "trainable parameters": describe_trainable(trainable, total),
        "data": ", ".join(f"{k}: {v}" for k, v in splits.sources.items()),
        "examples": f"train {len(splits.train):,}, validation {len(splits.validation):,}, test {len(splits.test):,}",
        "optimizer steps": f"{fit['steps']:,} (best at step {fit['best_step']}"
        + (", stopped early)" if fit["stopped_early"] else ")"),
        "training time": f"{fit['train_seconds']:.1f} s ({fit['train_samples_per_second']:.1f} samples/s)",
        "seed": str(config.seed),
    }


def data_notes(splits) -> list[str]:
    notes = [f"{splits.total_rows:,} rows read."]
    if splits.skipped_rows:
        reasons = ", ".join(f"{n} {kind}" for kind, n in splits.skipped.items())
        notes.append(f"{splits.skipped_rows:,} rows skipped (data.on_bad_rows: skip): {reasons}.")
    return notes + splits.notes


def _classifier_sections(evaluation: dict[str, dict]) -> dict[str, str]:
    sections = {}
    if "subset_accuracy" in evaluation["validation"]:
        sections["Thresholds"] = ("Per-label decision thresholds were tuned on the validation split (stored in "
                                  "model/tuneforge.json), so validation metrics are optimistic; judge the model "
                                  "on the test split or on new data with `tuneforge eval`.")
    if "test" in evaluation:
        validation = evaluation["validation"]
        sections["Validation"] = (f"accuracy {validation['accuracy']:.4f}, macro F1 {validation['macro_f1']:.4f}, "
                                  f"loss {validation['loss']:.4f} (the headline numbers above are on the test split)")
    return sections
