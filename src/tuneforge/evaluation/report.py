"""Markdown evaluation report: what a person opens after a run to see how the model did."""

from __future__ import annotations

from pathlib import Path

from tuneforge.evaluation.metrics import headline_metrics


def write_report(
    path: str | Path,
    *,
    title: str,
    summary: dict[str, str],
    metrics: dict,
    distribution: dict | None = None,
    data_notes: list[str] | None = None,
    data_warnings: list[str] | None = None,
    images: dict[str, str] | None = None,
    extra_sections: dict[str, str] | None = None,
) -> Path:
    """Write a Markdown report for one run.

    Sections, each left out when there is nothing to show: run summary, data warnings (before the
    metrics, which they may put in doubt), headline metrics, per-class table, confusion matrix
    (single-label metrics only), label distribution, data notes, images, then ``extra_sections`` in
    the order given.

    Args:
        path: Where to write the ``.md`` file; parent folders are created.
        title: Top-level heading.
        summary: Key/value facts about the run (model, method, trainable parameters, run time, ...).
        metrics: Output of ``classification_metrics`` or ``multilabel_metrics``.
        distribution: Split -> (label -> count), as from ``label_distribution``.
        data_notes: Sentences about the data, e.g. "12 rows skipped: 10 empty text, 2 missing label".
        data_warnings: Data that trained but is probably not what was meant (``tuneforge.data.hygiene``).
        images: Caption -> image path. Paths inside the report's folder are written relative to it,
            so the report still renders when the run folder is moved.
        extra_sections: Heading -> Markdown body, appended in order.

    Returns:
        The path written, as a ``Path``.
    """
    target = Path(path)
    sections = [f"# {_inline(title)}"]
    if summary:
        sections.append(_key_value_section("Summary", summary))
    if data_warnings:
        sections.append("## Data warnings\n\n" + "\n".join(f"- {_inline(warning)}" for warning in data_warnings))
    sections.append(_metrics_section(metrics))
    per_class = metrics.get("per_class") or {}
    if per_class:
        sections.append(_per_class_section(per_class))
    if metrics.get("confusion_matrix"):
        sections.append(_confusion_section(metrics["confusion_matrix"], metrics.get("labels") or list(per_class)))
    if distribution:
        sections.append(_distribution_section(distribution))
    if data_notes:
        sections.append("## Data notes\n\n" + "\n".join(f"- {_inline(note)}" for note in data_notes))
    if images:
        sections.append(_images_section(images, target.parent))
    for heading, body in (extra_sections or {}).items():
        sections.append(f"## {_inline(heading)}\n\n{body.strip()}")

    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return target


def _key_value_section(heading: str, values: dict[str, str]) -> str:
    rows = [[str(key), str(value)] for key, value in values.items()]
    return f"## {heading}\n\n" + _table(["item", "value"], rows)


def _metrics_section(metrics: dict) -> str:
    pairs = headline_metrics(metrics)
    if not pairs:
        return "## Metrics\n\nNo metrics were recorded."
    return "## Metrics\n\n" + _table(["metric", "value"], [list(pair) for pair in pairs])


def _per_class_section(per_class: dict) -> str:
    rows = [
        [str(name), f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(int(row["support"]))]
        for name, row in per_class.items()
    ]
    return "## Per-class results\n\n" + _table(["label", "precision", "recall", "F1", "support"], rows)


def _confusion_section(matrix: list[list[int]], labels: list[str]) -> str:
    # Label names run along both axes, so the header says which axis is which.
    header = ["true \\ predicted", *map(str, labels)]
    rows = [[str(label), *(str(int(count)) for count in counts)] for label, counts in zip(labels, matrix, strict=False)]
    return "## Confusion matrix\n\nRows are true labels, columns are predicted labels.\n\n" + _table(header, rows)


def _distribution_section(distribution: dict[str, dict[str, int]]) -> str:
    splits = list(distribution)
    labels: list[str] = []
    for counts in distribution.values():
        labels.extend(label for label in counts if label not in labels)
    rows = [[str(label), *(str(distribution[split].get(label, 0)) for split in splits)] for label in labels]
    rows.append(["**total**", *(f"**{sum(distribution[split].values())}**" for split in splits)])
    return "## Label distribution\n\n" + _table(["label", *splits], rows)


def _images_section(images: dict[str, str], report_dir: Path) -> str:
    lines = [f"![{_inline(caption)}]({_image_link(image, report_dir)})" for caption, image in images.items()]
    return "## Figures\n\n" + "\n\n".join(lines)


def _image_link(image: str | Path, report_dir: Path) -> str:
    """Relative link when the image sits under the report's folder; otherwise the path as given. A relative path
    that exists from the working directory (a run under the default ``output.dir: runs``) is read from there."""
    image_path = Path(image)
    if not image_path.is_absolute() and image_path.exists() and not (report_dir / image_path).exists():
        image_path = image_path.resolve()
    if image_path.is_absolute():
        try:
            image_path = image_path.resolve().relative_to(report_dir.resolve())
        except ValueError:
            pass  # Outside the report folder: an absolute link is the only one that works.
    # Markdown link targets break on spaces and parentheses; percent-encode just those.
    return image_path.as_posix().replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; numeric-looking columns are right-aligned for easy comparison."""
    align = [
        "---:" if rows and all(_is_number(row[i]) for row in rows if i < len(row)) else "---"
        for i in range(len(header))
    ]
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines.extend("| " + " | ".join(_cell(value) for value in row) + " |" for row in rows)
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Table-safe text: a raw ``|`` would end the cell and a newline would end the row."""
    return _inline(text).replace("|", "\\|")


def _inline(text: str) -> str:
    return " ".join(str(text).split())


def _is_number(text: str) -> bool:
    try:
        float(text.strip("*"))
    except ValueError:
        return False
    return True
