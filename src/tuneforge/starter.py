"""``tuneforge init``: a commented starter config inferred from the user's own data file."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from tuneforge.data.coverage import cjk_share
from tuneforge.data.readers import read_columns
from tuneforge.errors import DataError

_LABEL_NAMES = ("label", "labels", "class", "category", "target", "sentiment", "intent", "tag", "tags", "y")
_SEPARATORS = ("|", ";")


def starter_config(task: str, data: Path, encoding: str | None = None, sheet: str | int | None = None) -> str:
    """YAML text for ``task`` on ``data``: columns, label set and a sensible method, every line commented.
    ``encoding``/``sheet`` (init's --encoding/--sheet) are how to read ``data``, and written into the config."""
    columns, rows = read_columns(data, encoding=encoding, sheet=sheet)
    if not rows:
        raise DataError(f"{data}: no rows to look at")
    text_column = _text_column(columns, rows)
    label_column = _label_column(columns, rows, text_column)
    values = [rows_value for rows_value in (row.get(label_column) for row in rows) if rows_value not in (None, "")]
    multi_label, separator = _multi_label(values)
    labels = _label_counts(values, multi_label, separator)
    shown = ", ".join(f"{name} ({count})" for name, count in labels.most_common(12))
    more = f" and {len(labels) - 12} more" if len(labels) > 12 else ""
    backbone = text_backbone([str(row.get(text_column) or "") for row in rows])
    return _TEMPLATE.format(
        model=backbone.model, why=_comment(backbone.why), epochs=backbone.epochs, batch_size=backbone.batch_size,
        lr=backbone.lr, max_length=backbone.max_length,
        task=task,
        name=_yaml(data.stem.replace(" ", "-")),
        train_file=_yaml(str(data)),
        reading=_reading(encoding, sheet),
        text_column=_yaml(text_column),
        label_column=_yaml(label_column),
        multi_label=_yaml(multi_label),
        separator=_yaml(separator or "|"),
        rows=len(rows),
        labels=_comment(shown + more),
        columns=_comment(", ".join(columns)),
        source=_comment(str(data)),
    )


@dataclass(frozen=True)
class TextBackbone:
    """The registered model ``init`` starts a text classifier from, with training settings that suit it."""

    model: str
    why: str
    epochs: int
    batch_size: int
    lr: str
    max_length: int


# MiniLM reads English (and other Latin-script text) well and fast; its vocabulary turns most Chinese,
# Japanese and Korean characters into [UNK]. Gemma 3's 262k-token vocabulary covers them; it is 12x larger,
# so one epoch is the budget (measured in bench/chinese_text.py: docs/chinese.md).
ENGLISH_BACKBONE = TextBackbone("minilm-l6", "a small, fast English encoder", 3, 32, "1.0e-3", 128)
CJK_BACKBONE = TextBackbone("gemma3-270m", "", 1, 16, "5.0e-4", 128)
CJK_THRESHOLD = 0.3  # share of the letters that are Chinese/Japanese/Korean


def text_backbone(texts: list[str]) -> TextBackbone:
    """Gemma 3 270M when much of the text is Chinese, Japanese or Korean, else MiniLM."""
    share = cjk_share(texts)
    if share < CJK_THRESHOLD:
        return ENGLISH_BACKBONE
    why = f"{share:.0%} of the letters are Chinese/Japanese/Korean, which minilm-l6 cannot read"
    return TextBackbone(**{**CJK_BACKBONE.__dict__, "why": why})


def _reading(encoding: str | None, sheet: str | int | None) -> str:
    """The data lines for how init was told to read the file (nothing when it detected it)."""
    lines = [f"  encoding: {_yaml(encoding)}            # as given to init --encoding\n"] if encoding else []
    if sheet is not None:
        lines.append(f"  sheet: {_yaml(sheet)}               # the Excel sheet (init --sheet)\n")
    return "".join(lines)


def _yaml(value: object) -> str:
    """A YAML scalar that reads back as the same value ('2024' stays a string, 'a: b' stays whole)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)  # 评论 stays 评论
    return text.strip().removesuffix("...").strip()


def _comment(text: str) -> str:
    return text.replace("\n", " ")


def _text_column(columns: list[str], rows: list[dict]) -> str:
    """The string column with the longest texts on average."""
    def mean_length(column: str) -> float:
        texts = [row.get(column) for row in rows if isinstance(row.get(column), str)]
        return sum(len(t) for t in texts) / max(len(rows), 1)

    best = max(columns, key=mean_length)
    if mean_length(best) == 0:
        raise DataError(f"no text column found among: {', '.join(columns)}")
    return best


def _label_column(columns: list[str], rows: list[dict], text_column: str) -> str:
    named = [c for c in columns if c.lower() in _LABEL_NAMES and c != text_column]
    if named:
        return named[0]
    # otherwise the column with the fewest distinct values (but more than one)
    candidates = [c for c in columns if c != text_column]
    distinct = {c: len({str(row.get(c)) for row in rows}) for c in candidates}
    usable = [c for c in candidates if distinct[c] > 1]
    if not usable:
        raise DataError(f"no label column found among: {', '.join(columns)}; name one 'label'")
    return min(usable, key=lambda c: distinct[c])


def _multi_label(values: list) -> tuple[bool, str | None]:
    if any(isinstance(v, list) for v in values):
        return True, None
    for separator in _SEPARATORS:
        if sum(separator in str(v) for v in values) >= max(1, len(values) // 20):
            return True, separator
    return False, None


def _label_counts(values: list, multi_label: bool, separator: str | None) -> Counter:
    counts: Counter = Counter()
    for value in values:
        if isinstance(value, list):
            counts.update(str(v) for v in value)
        elif multi_label and separator:
            counts.update(part.strip() for part in str(value).split(separator) if part.strip())
        else:
            counts[str(value)] += 1
    return counts


_TEMPLATE = """\
# tuneforge starter config, inferred from {source} ({rows} rows looked at).
# Columns found: {columns}
# Labels found: {labels}
# Train with:   tuneforge train THIS_FILE      (every key: `tuneforge config`)
task: {task}
name: {name}
seed: 42

data:
  dataset: null                 # using your own file instead of a built-in dataset
  train_file: {train_file}
{reading}  # validation_file: ...        # optional; otherwise split seeded 80/10/10 from train_file
  # test_file: ...
  text_column: {text_column}
  label_column: {label_column}
  multi_label: {multi_label}           # true: a list of labels per row
  label_separator: {separator}         # how labels are joined inside one cell when multi_label
  max_length: {max_length}               # tokens per text; raise for long documents (slower)
  on_bad_rows: error            # error: list bad rows and stop; skip: train on the good rows

model:
  name: {model}               # {why}; `tuneforge list models`, or a local Hugging Face folder

method:
  name: lora                    # lora | full | topk | freeze  (`tuneforge list methods`)
  r: 8                          # adapter rank: more = more capacity, more parameters
  alpha: 16.0

train:
  epochs: {epochs}
  batch_size: {batch_size}
  lr: {lr}                    # LoRA likes ~1e-3 (5e-4 on larger models); use ~5e-5 for method: full
  class_weights: null           # auto: reweight rare labels (imbalanced data)

eval:
  metric: macro_f1              # chooses the best checkpoint; accuracy, macro_f1, weighted_f1...
  early_stopping_patience: 3

output:
  dir: runs
"""


# --------------------------------------------------------------------------- images


def image_starter_config(task: str, data: Path, encoding: str | None = None, sheet: str | int | None = None) -> str:
    """YAML text for ``task`` (image classification) on a class-per-folder directory, a table of image paths or
    IDX; ``task`` is taken for the same signature as ``starter_config``; ``encoding``/``sheet`` read a table."""
    from tuneforge.config import DataConfig
    from tuneforge.data.images import IMAGE_SUFFIXES, idx_labels_path, open_image, read_idx, resolve_image_files

    files, _ = resolve_image_files(DataConfig(dataset=None, train_file=str(data)))
    train = files["train"]
    image_column = "image"
    if train.is_dir():
        counts = Counter({folder.name: sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
                          for folder in sorted(train.iterdir()) if folder.is_dir()})
        firsts = [next((p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES), None)
                  for folder in sorted(train.iterdir())[:5] if folder.is_dir()]
        side = max((max(open_image(str(p)).size) for p in firsts if p is not None), default=224)
    elif "idx3" in train.name:
        counts = Counter(str(v) for v in read_idx(idx_labels_path(train), 1).tolist())
        side = max(read_idx(train, 3).shape[1:])
    else:
        columns, rows = read_columns(train, encoding=encoding, sheet=sheet)
        image_column = next((c for c in columns if any(str(r.get(c) or "").lower().endswith(IMAGE_SUFFIXES)
                                                       for r in rows)), None)
        if image_column is None:
            raise DataError(f"{train}: no column of image paths ({', '.join(IMAGE_SUFFIXES)}) among: "
                            f"{', '.join(columns)}")
        label_column = _label_column(columns, rows, image_column)
        counts = Counter(str(r.get(label_column)) for r in rows if r.get(label_column) not in (None, ""))
        side = 224
    if len(counts) < 2:
        raise DataError(f"{train}: found {len(counts)} class(es); image classification needs at least 2")
    small = side <= 64
    shown = ", ".join(f"{name} ({count})" for name, count in counts.most_common(12))
    return _IMAGE_TEMPLATE.format(
        source=_comment(str(data)), labels=_comment(shown + (f" and {len(counts) - 12} more" if len(counts) > 12
                                                            else "")),
        name=_yaml(data.stem.replace(" ", "-") or "images"), train_file=_yaml(str(data)),
        image_column=_yaml(image_column), side=side, size=48 if small else 224, resize="48" if small else "null",
        crop=_yaml(not small),
    )


_IMAGE_TEMPLATE = """\
# tuneforge starter config for image classification, inferred from {source}
# Classes found: {labels}
# Images seen are about {side} px on their longer side.
# Train with:   tuneforge train THIS_FILE      (every key: `tuneforge config`; guide: docs/images.md)
task: image_classification
name: {name}
seed: 42

data:
  dataset: null
  train_file: {train_file}    # class-per-folder directory (train/ val/ test/ used if present), table or IDX
  image_column: {image_column}          # tables only: the column of image paths, relative to the table
  on_bad_rows: error            # error: list unreadable images and stop; skip: train on the good ones

model:
  name: efficientnet-lite0

method:
  name: full                    # full | topk | lora | freeze (add cache_features: true for a fast probe)

image:
  size: {size}                     # input side: 224 for photos; small images: 32-64 is faster and enough
  resize: {resize}                  # evaluation: shorter side before the centre crop (null = size / 0.875)
  random_resized_crop: {crop}
  hflip: true                   # false for text, digits or anything whose mirror image is another class
  color_jitter: 0.0

train:
  epochs: 3
  batch_size: 64
  lr: 2.0e-3                    # full fine-tuning of this CNN; ~5e-3 for lora, ~1e-2 for a cached probe
  num_workers: 2                # processes decoding and augmenting images

eval:
  metric: accuracy
  early_stopping_patience: 3

output:
  dir: runs
"""
