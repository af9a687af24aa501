"""``tuneforge compress RUN --all``: build every smaller variant of a run and measure them side by side.

Every row is measured in the same process, the same way, on the run's own test split: file size, stored
parameters, test accuracy and macro F1, accuracy retained, label agreement with the original, latency at
batch 1 (p50/p95 over single texts, tokenization included) and throughput at batch 32. Written as
``compression.md``, ``compression.csv`` and ``compression.png`` (accuracy against latency).
"""

from __future__ import annotations

import csv
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tuneforge.errors import ConfigError, RunError
from tuneforge.runs import read_meta
from tuneforge.tasks import open_run

# variant -> what it is (the table's note)
VARIANTS = {
    "int8": "PyTorch dynamic int8 (Linear weights int8 per channel, embeddings fp32)",
    "onnx": "ONNX, fp32, run by ONNX Runtime",
    "onnx-int8": "ONNX Runtime dynamic int8 (MatMul and embedding weights int8 per channel)",
    "distilled": "student: every other layer of the teacher, distilled (KL + CE)",
    "heads": "40% of attention heads pruned by gradient importance, 1 epoch recovery with distillation",
    "ffn": "30% of FFN neurons pruned by gradient importance, no recovery",
    "layers": "2 of 6 layers dropped (least loss increase), no recovery",
    "magnitude": "30% of Linear weights zeroed (global magnitude): file and speed unchanged, see zipped MB",
}
FAST = ("int8", "onnx", "onnx-int8")  # without --all: no training involved
LATENCY_TEXTS = 100
THROUGHPUT_TEXTS = 512


@dataclass
class Row:
    variant: str
    size_mb: float
    zipped_mb: float
    parameters: int
    accuracy: float
    macro_f1: float
    retained_pct: float
    agreement_pct: float
    p50_ms: float
    p95_ms: float
    batch32_per_s: float
    speedup_b1: float
    speedup_b32: float
    folder: str
    note: str


def compress(run: str | Path, variants: list[str], out: str | Path | None = None,
             overrides: list[str] | None = None) -> Path:
    """Build ``variants`` of ``run`` under ``out`` (default ``RUN/compress-<time>``), measure, write the table."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    folder, task = open_run(run)
    if not task.compressible:
        raise ConfigError(f"{run}: compress measures text classifiers; a {task.name} run has no variants to build")
    if folder.is_ensemble:  # refused before any folder is made
        raise ConfigError(f"{run}: an ensemble is several models, so it has no one set of weights to prune or "
                          "quantise; distil it into one model (tuneforge distill) and compress that")
    source = folder.model_dir
    texts, truth = labelled_test_split(source)  # before minutes of building: a run without one fails now
    out = Path(out) if out else source.parent / f"compress-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out} is not empty; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    folders = {"original": build_variant(run, "original", out, overrides)}
    for variant in variants:
        print(f"compress: building {variant}", file=sys.stderr)
        folders[variant] = build_variant(run, variant, out, overrides)
    rows = measure_all(folders, texts, truth)
    write_table(rows, out)
    return out


def build_variant(run: str | Path, variant: str, out: Path, overrides: list[str] | None) -> Path:
    """The model folder of one variant, built from ``run``."""
    from tuneforge.compression.distill import distill
    from tuneforge.compression.export import export
    from tuneforge.compression.pruning import prune

    runs = [f"output.dir={out / 'runs'}", *(overrides or [])]
    if variant == "original":
        return export(run, "merged", out / "original")
    if variant in FAST:
        return export(run, variant, out / variant)
    if variant == "distilled":
        return distill(run, None, runs).model_dir
    if variant == "heads":
        return prune(run, "heads", 0.4, recover_epochs=1, overrides=runs).model_dir
    amount = {"ffn": 0.3, "layers": 1 / 3, "magnitude": 0.3}[variant]
    return prune(run, variant, amount, out=out / variant)


def labelled_test_split(source: Path) -> tuple[list[str], np.ndarray]:
    """The run's own test split (its config's data, split and seed): texts and label indices."""
    from tuneforge.config import load_config
    from tuneforge.data.splits import load_splits

    config_path = source.parent / "config.yaml"
    if not config_path.is_file():
        raise RunError(f"{source}: no config.yaml beside the model, so its test split is unknown")
    config = load_config(config_path)
    meta = read_meta(source)
    if meta.get("multi_label"):
        raise ConfigError("compress measures single-label classifiers (accuracy, macro F1)")
    test = load_splits(config.data, config.seed).test
    if not test:
        raise RunError(f"{source}: the run has no test split to measure on")
    names = meta["labels"]
    return [row.text for row in test], np.array([names.index(row.label) for row in test])


def measure_all(folders: dict[str, Path], texts: list[str], truth: np.ndarray) -> list[Row]:
    from sklearn.metrics import f1_score

    from tuneforge.tasks import load

    rows, reference = [], None
    for variant, folder in folders.items():
        model = load(folder)
        predicted = model.predict_proba(texts, batch_size=32).argmax(axis=1)
        reference = predicted if reference is None else reference
        accuracy = float((predicted == truth).mean())
        p50, p95 = _latency(model, texts[:LATENCY_TEXTS])
        size, zipped, parameters = _stored(folder)
        rows.append(Row(variant, size / 1e6, zipped / 1e6, parameters, accuracy,
                        float(f1_score(truth, predicted, average="macro")), 0.0,
                        100 * float((predicted == reference).mean()), p50, p95, _throughput(model, texts), 0.0, 0.0,
                        str(folder), VARIANTS.get(variant, "fp32, adapters merged: the baseline")))
        print(f"compress: measured {variant}: accuracy {accuracy:.4f}, p50 {p50:.1f} ms", file=sys.stderr)
    base = rows[0]
    for row in rows:
        row.retained_pct = 100 * row.accuracy / max(base.accuracy, 1e-9)
        row.speedup_b1 = base.p50_ms / row.p50_ms
        row.speedup_b32 = row.batch32_per_s / base.batch32_per_s
    return rows


def _latency(model, texts: list[str]) -> tuple[float, float]:
    model.predict_proba(texts[:5], batch_size=1)  # warm-up: lazy initialisation, allocator, caches
    times = []
    for text in texts:
        start = time.perf_counter()
        model.predict_proba([text], batch_size=1)
        times.append(1000 * (time.perf_counter() - start))
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def _throughput(model, texts: list[str]) -> float:
    sample = (texts * (THROUGHPUT_TEXTS // len(texts) + 1))[:THROUGHPUT_TEXTS]
    model.predict_proba(sample[:64], batch_size=32)
    start = time.perf_counter()
    model.predict_proba(sample, batch_size=32)
    return len(sample) / (time.perf_counter() - start)


def _stored(folder: Path) -> tuple[int, int, int]:
    """Bytes of the weight files, the same bytes after zlib, and the numbers they store."""
    size = zipped = parameters = 0
    for path in sorted([*folder.glob("*.safetensors"), *folder.glob("*.onnx")]):
        data = path.read_bytes()
        size += len(data)
        zipped += len(zlib.compress(data, 1))
        parameters += _stored_numbers(path)
    return size, zipped, parameters


def _stored_numbers(path: Path) -> int:
    if path.suffix == ".onnx":
        import onnx

        graph = onnx.load(str(path)).graph
        return sum(int(np.prod(t.dims)) for t in graph.initializer)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return sum(int(np.prod(handle.get_slice(k).get_shape())) for k in handle.keys())


# --------------------------------------------------------------------------- writing


COLUMNS = [("variant", "variant", "{}"), ("size_mb", "size MB", "{:.1f}"), ("zipped_mb", "zipped MB", "{:.1f}"),
           ("parameters", "parameters", "{:,}"), ("accuracy", "test acc", "{:.4f}"), ("macro_f1", "macro F1", "{:.4f}"),
           ("retained_pct", "acc retained %", "{:.1f}"), ("agreement_pct", "same label %", "{:.1f}"),
           ("p50_ms", "p50 ms (b=1)", "{:.1f}"), ("p95_ms", "p95 ms (b=1)", "{:.1f}"),
           ("speedup_b1", "speed-up b=1", "{:.2f}x"), ("batch32_per_s", "texts/s (b=32)", "{:.0f}"),
           ("speedup_b32", "speed-up b=32", "{:.2f}x")]


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        values = asdict(row)
        lines.append("| " + " | ".join(fmt.format(values[key]) for key, _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def write_table(rows: list[Row], out: Path) -> None:
    with (out / "compression.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    notes = "\n".join(f"- **{r.variant}**: {r.note} (`{r.folder}`)" for r in rows)
    plot_tradeoff(rows, out / "compression.png")
    (out / "compression.md").write_text(
        "# Compression trade-offs\n\n"
        "Measured in one invocation on this machine, on the run's test split. Latency: one text per call "
        f"({LATENCY_TEXTS} texts, tokenization included); throughput: {THROUGHPUT_TEXTS} texts in batches of 32. "
        "Speed-ups are against the original in the same invocation. Size: the weight files; zipped: the same "
        "bytes through zlib, where zeroed weights show.\n\n"
        f"{markdown_table(rows)}\n\n{notes}\n\n![accuracy against latency](compression.png)\n", encoding="utf-8")


def plot_tradeoff(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        axis.scatter(row.p50_ms, 100 * row.accuracy, s=20 + row.size_mb * 2, alpha=0.7)
        axis.annotate(f"{row.variant} ({row.size_mb:.0f} MB)", (row.p50_ms, 100 * row.accuracy),
                      textcoords="offset points", xytext=(6, 4), fontsize=8)
    axis.set_xlabel("latency p50 at batch 1 (ms, lower is better)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title("Accuracy against latency (marker area ~ file size)")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
