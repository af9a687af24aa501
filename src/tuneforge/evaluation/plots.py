"""PNG plots for evaluation reports: confusion matrix, training curves, label distribution, and for
image models the per-class accuracy and a grid of the most confidently wrong images.

Every function writes one PNG, creates the parent folder, closes its figure (training runs make
many plots and pyplot keeps figures alive otherwise) and returns the path it wrote.

Labels are drawn in Chinese, Japanese or Korean as readily as in English: text is set in DejaVu Sans
(matplotlib's usual look) and any character it lacks comes from the first installed CJK font of
``font_chain()``. With no CJK font installed, one warning names the fix instead of matplotlib's warning
per missing glyph.
"""

from __future__ import annotations

import functools
import glob
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import matplotlib

# Headless on purpose: training runs on servers and in CI, where no display exists.
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ft2font import FT2Font  # noqa: E402

_DPI = 100

# --------------------------------------------------------------------------- fonts for Chinese, Japanese, Korean

LATIN_FAMILY = "DejaVu Sans"  # ships with matplotlib: first, so Latin text looks as it always has
# Families with CJK glyphs, in order of preference; only those matplotlib finds join the chain.
CJK_FAMILIES = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK KR", "Noto Sans CJK TC",
                "Source Han Sans SC", "WenQuanYi Zen Hei", "Droid Sans Fallback", "Noto Sans SC", "Microsoft YaHei",
                "SimHei", "PingFang SC", "Hiragino Sans GB", "Arial Unicode MS")
# Where Debian and Ubuntu install them (fonts-wqy-microhei, fonts-wqy-zenhei, fonts-noto-cjk, fonts-droid-fallback).
# A font installed after matplotlib built its font cache stays unknown to matplotlib until registered.
CJK_FONT_FILES = ("/usr/share/fonts/truetype/wqy/*.tt[cf]", "/usr/share/fonts/opentype/noto/NotoSansCJK*.tt[cf]",
                  "/usr/share/fonts/truetype/noto/NotoSansCJK*.tt[cf]", "/usr/share/fonts/truetype/droid/*.ttf")
FONT_FIX = "apt-get install fonts-wqy-microhei (or `make install`)"
_MISSING_GLYPH = re.compile(r"Glyph (\d+) .*missing from font")
_REPORTED: set[str] = set()  # what this process has warned about already: once per process is enough
_Plot = TypeVar("_Plot", bound=Callable)


@functools.cache
def font_chain() -> tuple[str, ...]:
    """The font families text is drawn with, in fallback order: DejaVu Sans, then every installed CJK family.

    Installed CJK font files matplotlib does not know yet are registered first.
    """
    known = {entry.fname for entry in font_manager.fontManager.ttflist}
    for pattern in CJK_FONT_FILES:
        for file in sorted(glob.glob(pattern)):
            if file not in known:
                try:
                    font_manager.fontManager.addfont(file)
                except (OSError, RuntimeError, ValueError):
                    pass  # a damaged font file is as good as none: the chain just goes without it
    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    return (LATIN_FAMILY, *(family for family in CJK_FAMILIES if family in installed))


def font_for(char: str) -> str | None:
    """The family that draws ``char`` in these plots (the first of ``font_chain()`` with a glyph for it), or None."""
    for family in font_chain():
        path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
        if ord(char) in FT2Font(path).get_charmap():
            return family
    return None


def draws_any_script(plot: _Plot) -> _Plot:
    """Run a plot function with the CJK fallback chain; glyphs no installed font has give one warning with the
    fix, once per process, instead of matplotlib's warning per glyph and plot."""

    @functools.wraps(plot)
    def with_fonts(*args, **kwargs):
        with plt.rc_context({"font.family": list(font_chain())}), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = plot(*args, **kwargs)
        _report_missing_glyphs(caught)
        return result

    return with_fonts  # type: ignore[return-value]


def _report_missing_glyphs(caught: list[warnings.WarningMessage]) -> None:
    missing = []
    for record in caught:
        match = _MISSING_GLYPH.search(str(record.message))
        if match:
            missing.append(chr(int(match.group(1))))
        else:  # not ours to judge: pass it on as it came
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)
    if missing and "glyphs" not in _REPORTED:
        _REPORTED.add("glyphs")
        others = len(set(missing)) - 1
        more = f" and {others} more character{'s' if others > 1 else ''}" if others else ""
        print(f"warning: no installed font has {missing[0]!r} (U+{ord(missing[0]):04X}){more} used in the plots' "
              f"labels, so they show as empty boxes; for Chinese, Japanese and Korean: {FONT_FIX}", file=sys.stderr)


# Plots made elsewhere (comparisons, compression trade-offs) get the same fallback for any text they draw.
matplotlib.rcParams["font.family"] = list(font_chain())


@draws_any_script
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


@draws_any_script
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


@draws_any_script
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


@draws_any_script
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


@draws_any_script
def plot_image_grid(images: list, titles: list[str], path: str | Path, columns: int = 4,
                    title: str = "Most confidently wrong") -> Path:
    """Save images (PIL or HxW[x3] arrays) in a grid, each with a caption such as "true: cat / pred: dog 0.98"."""
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, caption in zip(axes.ravel(), images, titles, strict=False):
        pixels = np.asarray(image)
        gray = pixels.ndim == 2 and pixels.dtype == np.uint8  # fixed 0-255 scale: a pale scan must not turn black
        ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, interpolation="nearest",
                  vmin=0 if gray else None, vmax=255 if gray else None)
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
