"""PNG plots for evaluation reports: confusion matrix, training curves, label distribution, and for
image models the per-class accuracy and a grid of the most confidently wrong images.

Every function writes one PNG, creates the parent folder, closes its figure (training runs make
many plots and pyplot keeps figures alive otherwise) and returns the path it wrote.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

# Headless on purpose: training runs on servers and in CI, where no display exists.
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

_DPI = 100


def plot_confusion_matrix(matrix: list[list[int]], label_names: list[str], path: str | Path) -> Path:
    """Save a confusion-matrix heatmap.

    Cell colour is the row-normalised rate (share of each true class), so a small class is as
    readable as a large one; the text in each cell is the raw count.

    Args:
        matrix: Square count matrix, rows = true label, columns = predicted label.
        label_names: One name per row/column.
        path: Where to write the PNG.

    Returns:
        The path written, as a ``Path``.

    Raises:
        ValueError: If the matrix is not square or does not match ``label_names``.
    """
    counts = np.asarray(matrix, dtype=int)
    n = len(label_names)
    if n == 0 or counts.shape != (n, n):
        raise ValueError(f"confusion matrix has shape {counts.shape} but there are {n} labels")
    row_sums = counts.sum(axis=1, keepdims=True)
    # A class with no true examples has an all-zero row; keep it at 0 instead of dividing by zero.
    rates = np.divide(counts, row_sums, out=np.zeros(counts.shape, dtype=float), where=row_sums > 0)

    side = min(4.0 + 0.45 * n, 18.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    _annotate_cells(ax, counts, rates, font_size=_cell_font_size(side, n))

    _set_category_ticks(ax, label_names, font_size=max(7.0, 12.0 - 0.2 * n), rotate=n > 10)
    ax.set_yticks(range(n), labels=[_literal(name) for name in label_names], fontsize=max(7.0, 12.0 - 0.2 * n))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    return save_figure(fig, path)


def plot_training_curves(history: list[dict], path: str | Path, metric: str = "accuracy") -> Path:
    """Save loss and evaluation-metric curves against the training step.

    ``history`` mixes training log records (``train_loss`` or ``loss``) with evaluation records
    (``eval_loss``, ``eval_<metric>``); records without a value for a curve are skipped, so a run
    with no evaluation, or a single logged point, still gives a plot.

    Args:
        history: Log records, each with a ``step`` (the record's index is used when missing).
        path: Where to write the PNG.
        metric: Evaluation metric to plot, with or without the ``eval_`` prefix.

    Returns:
        The path written, as a ``Path``.
    """
    metric_key = metric if metric.startswith("eval_") else f"eval_{metric}"
    train_loss = _series(history, "train_loss", fallback="loss")
    eval_loss = _series(history, "eval_loss")
    eval_metric = _series(history, metric_key)

    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    _plot_series(loss_ax, train_loss, label="train loss")
    _plot_series(loss_ax, eval_loss, label="eval loss")
    _finish_panel(loss_ax, title="Loss", ylabel="loss", has_data=bool(train_loss[0] or eval_loss[0]))
    _plot_series(metric_ax, eval_metric, label=metric_key)
    _finish_panel(metric_ax, title=metric_key, ylabel=metric_key.removeprefix("eval_"), has_data=bool(eval_metric[0]))
    return save_figure(fig, path)


def plot_label_distribution(distribution: dict[str, dict[str, int]], path: str | Path) -> Path:
    """Save a grouped bar chart: one group per label, one bar per split.

    Args:
        distribution: Split name -> (label -> count), as returned by
            :func:`tuneforge.evaluation.metrics.label_distribution`.
        path: Where to write the PNG.

    Returns:
        The path written, as a ``Path``.
    """
    splits = list(distribution)
    labels: list[str] = []
    for counts in distribution.values():
        labels.extend(label for label in counts if label not in labels)

    width_in = min(max(6.0, 0.5 * len(labels) * max(1, len(splits)) ** 0.5 + 2.0), 24.0)
    fig, ax = plt.subplots(figsize=(width_in, 5))
    positions = np.arange(len(labels))
    bar_width = 0.8 / max(1, len(splits))
    for i, split in enumerate(splits):
        heights = [distribution[split].get(label, 0) for label in labels]
        offset = (i - (len(splits) - 1) / 2) * bar_width
        ax.bar(positions + offset, heights, width=bar_width, label=_literal(split))

    _set_category_ticks(ax, labels, font_size=max(6.0, 10.0 - 0.1 * len(labels)), rotate=len(labels) > 8)
    ax.set_ylabel("examples")
    ax.set_title("Label distribution")
    if splits and labels:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no labels", ha="center", va="center", transform=ax.transAxes)
    return save_figure(fig, path)


def plot_per_class_accuracy(accuracy: dict[str, float], path: str | Path) -> Path:
    """Save horizontal bars of each class's accuracy (share of its images predicted right), worst on top."""
    ordered = sorted(accuracy.items(), key=lambda item: item[1])
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.35 * len(ordered) + 1.2)))
    positions = np.arange(len(ordered))
    ax.barh(positions, [value for _, value in ordered], color="tab:blue")
    for y, (_, value) in zip(positions, ordered, strict=True):
        inside = value > 0.85  # no room right of a long bar: write inside it, in white
        ax.text(value - 0.01 if inside else value + 0.01, y, f"{value:.3f}", va="center", fontsize=8,
                ha="right" if inside else "left", color="white" if inside else "black")
    ax.set_yticks(positions, labels=[_literal(name) for name, _ in ordered], fontsize=8)
    ax.invert_yaxis()  # worst class first, where the eye starts
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy within the class")
    ax.set_title("Per-class accuracy")
    ax.grid(True, axis="x", alpha=0.3)
    return save_figure(fig, path)


def plot_image_grid(images: list, titles: list[str], path: str | Path, columns: int = 4,
                    title: str = "Most confidently wrong") -> Path:
    """Save images (PIL or HxW[x3] arrays) in a grid, each with a caption such as "true: cat / pred: dog 0.98"."""
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, caption in zip(axes.ravel(), images, titles, strict=False):
        ax.imshow(np.asarray(image), cmap="gray" if np.asarray(image).ndim == 2 else None,
                  interpolation="nearest")
        ax.set_title(_literal(caption), fontsize=8)
    if not images:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center", transform=axes[0, 0].transAxes)
    fig.suptitle(title)
    return save_figure(fig, path)


def _set_category_ticks(ax, names: list[str], font_size: float, rotate: bool) -> None:
    """X tick labels, slanted when names are long or many so neighbours do not overlap."""
    slant = rotate or max((len(name) for name in names), default=0) > 4
    ax.set_xticks(
        range(len(names)),
        labels=[_literal(name) for name in names],
        fontsize=font_size,
        rotation=45 if slant else 0,
        ha="right" if slant else "center",
        rotation_mode="anchor",
    )


def _literal(text: str) -> str:
    """Escape ``$`` so a label like "$5-$10" is drawn as written, not parsed as mathtext."""
    return str(text).replace("$", r"\$")


def _cell_font_size(side_in: float, n: int) -> float:
    """Scale the in-cell numbers with the cell (about 3/4 of the figure side split n ways)."""
    cell_points = side_in * 0.75 / max(n, 1) * 72
    return min(13.0, max(6.0, 0.3 * cell_points))


def _annotate_cells(ax, counts: np.ndarray, rates: np.ndarray, font_size: float) -> None:
    """Write each count in its cell, white on dark cells so it stays legible."""
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            colour = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=font_size)


def _series(history: list[dict], key: str, fallback: str | None = None) -> tuple[list[float], list[float]]:
    """(steps, values) for records holding ``key`` (or ``fallback``), in step order."""
    points = []
    for index, record in enumerate(history):
        value = record.get(key, record.get(fallback) if fallback else None)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        points.append((float(record.get("step", index)), float(value)))
    points.sort(key=lambda point: point[0])
    return [p[0] for p in points], [p[1] for p in points]


def _plot_series(ax, series: tuple[list[float], list[float]], label: str) -> None:
    """Draw a line with markers; markers keep a single point visible."""
    steps, values = series
    if steps:
        ax.plot(steps, values, marker="o", markersize=3 if len(steps) > 20 else 5, label=label)


def _finish_panel(ax, title: str, ylabel: str, has_data: bool) -> None:
    """Axis labels, legend, and a visible note when there was nothing to plot."""
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if has_data:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no data recorded", ha="center", va="center", transform=ax.transAxes, color="gray")


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write the figure as PNG, creating parent folders, and always free it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.tight_layout()
        fig.savefig(target, format="png", dpi=_DPI)
    finally:
        plt.close(fig)
    return target
