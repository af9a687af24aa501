"""Finishing a run: metrics.json, history, plots and report.md, the same for every task.

A task hands over its evaluation, history and extras, plus its own report ``images`` and ``sections``
(and its next-step lines); the finisher writes the files every run has, so a run folder looks the same
whatever trained it.
"""

from __future__ import annotations

import json
from pathlib import Path

from tuneforge.config import Config
from tuneforge.evaluation.metrics import label_distribution
from tuneforge.evaluation.plots import plot_confusion_matrix, plot_label_distribution, plot_training_curves
from tuneforge.evaluation.report import write_report
from tuneforge.methods import describe_trainable
from tuneforge.runs.directories import Run


def finish_run(run_dir: Path, config: Config, splits, label_names: list[str], evaluation: dict[str, dict],
               history: list[dict], extras: dict, images: dict[str, str] | None = None,
               sections: dict[str, str] | None = None, usage: list[str] | None = None) -> Run:
    """Write metrics.json, plots and report.md (plus a task's own ``images`` and ``sections``); return the Run.

    ``usage``: the task's next-step command lines (``Task.usage``), shown under "Reproduce and use".
    """
    metrics = {"task": config.task, **evaluation, **extras, "labels": label_names}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")
    headline = evaluation.get("test") or evaluation["validation"]
    distribution = label_distribution(
        {"train": [e.label for e in splits.train], "validation": [e.label for e in splits.validation],
         "test": [e.label for e in splits.test]}
    )
    images = _plots(run_dir, headline, label_names, history, distribution, config.eval.metric) | (images or {})
    write_report(
        run_dir / "report.md",
        title=f"tuneforge run {run_dir.name}",
        summary=_summary(config, extras, splits),
        metrics=headline,
        distribution=distribution,
        data_notes=_data_notes(splits),
        images=images,
        extra_sections=(sections or {}) | _extra_sections(evaluation, run_dir, usage or []),
    )
    return Run(run_dir, metrics)


def _plots(run_dir: Path, headline: dict, labels: list[str], history: list[dict], distribution: dict,
           metric: str) -> dict[str, str]:
    images = {"Training curves": plot_training_curves(history, run_dir / "training_curves.png", metric=metric)}
    if "confusion_matrix" in headline:
        images["Confusion matrix"] = plot_confusion_matrix(headline["confusion_matrix"], labels,
                                                           run_dir / "confusion_matrix.png")
    images["Label distribution"] = plot_label_distribution(distribution, run_dir / "label_distribution.png")
    return {caption: str(path) for caption, path in images.items()}


def _summary(config: Config, extras: dict, splits) -> dict[str, str]:
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


def _data_notes(splits) -> list[str]:
    notes = [f"{splits.total_rows:,} rows read."]
    if splits.skipped_rows:
        reasons = ", ".join(f"{n} {kind}" for kind, n in splits.skipped.items())
        notes.append(f"{splits.skipped_rows:,} rows skipped (data.on_bad_rows: skip): {reasons}.")
    return notes


def _extra_sections(evaluation: dict[str, dict], run_dir: Path, usage: list[str]) -> dict[str, str]:
    sections = {}
    if "subset_accuracy" in evaluation["validation"]:
        sections["Thresholds"] = ("Per-label decision thresholds were tuned on the validation split (stored in "
                                  "model/tuneforge.json), so validation metrics are optimistic; judge the model "
                                  "on the test split or on new data with `tuneforge eval`.")
    if "test" in evaluation:
        validation = evaluation["validation"]
        sections["Validation"] = (f"accuracy {validation['accuracy']:.4f}, macro F1 {validation['macro_f1']:.4f}, "
                                  f"loss {validation['loss']:.4f} (the headline numbers above are on the test split)")
    sections["Reproduce and use"] = "\n".join(
        ["```bash", f"tuneforge train {run_dir}/config.yaml   # the same run again", *usage, "```"])
    return sections
