"""``tuneforge export RUN --format ...``: self-contained folders that predict on their own.

Every folder holds the tokenizer, ``config.json`` (label names included) and ``tuneforge.json`` (labels,
thresholds, max length, the format), so ``tuneforge predict``, ``tuneforge eval`` and ``tuneforge serve``
load it like a run. Formats:

- ``merged``: adapters folded into a plain transformers folder (safetensors).
- ``int8``: PyTorch dynamic int8 (Linear weights int8 per channel); the embeddings stay fp32.
- ``onnx``: the fp32 graph for ONNX Runtime (or any ONNX consumer), dynamic batch and length.
- ``onnx-int8``: ONNX Runtime dynamic int8 of that graph (MatMul and embedding weights int8).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from tuneforge.errors import ConfigError, RunError
from tuneforge.models.runtime import INT8_FILE, ONNX_FILE, int8_tensors, quantize_int8
from tuneforge.runs import write_meta
from tuneforge.tasks import open_run
from tuneforge.tasks.merging import require_mergeable

FORMATS = ("merged", "int8", "onnx", "onnx-int8")
ONNX_OPSET = 18


def export(run: str | Path, fmt: str, out: str | Path | None = None, force: bool = False) -> Path:
    """Write ``run``'s model in ``fmt`` to ``out`` (default ``RUN/merged`` or ``RUN/export-<fmt>``); returns it.

    The folder is written beside its destination and renamed into place, so a failure never leaves a
    half-written export, and an existing one is replaced only with ``force``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format: unknown format '{fmt}'; choose from {', '.join(FORMATS)}")
    folder, task = open_run(run)
    source = folder.model_dir
    out = Path(out) if out else default_output(source, "merged" if fmt == "merged" else f"export-{fmt}")
    check_replaceable(out, source, force)
    require_mergeable(folder.meta, f"--format {fmt}")
    if not task.exports:
        raise ConfigError(f"{run}: a {task.name} run has no weights of its own to export")
    if fmt not in task.exports or folder.format != "pytorch":
        raise ConfigError(f"--format {fmt}: int8 and ONNX exports are for fp32 text-classification runs; "
                          f"{run} is a {folder.meta.get('format', '')} {task.name} model "
                          "(export it with --format merged)")
    model = task.load(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        if fmt == "merged":
            _write_merged(model, run, staging)
        else:
            _write_classifier(model, source, fmt, staging)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def default_output(source: Path, name: str) -> Path:
    """``RUN/<name>`` for a run's model; a sibling ``<folder>-<name>`` for a model folder given directly (an
    export or a pruned model), so variants of variants never land on the original's."""
    return source.parent / name if source.name == "model" else source.with_name(f"{source.name}-{name}")


def check_replaceable(out: Path, source: Path, force: bool) -> None:
    """An existing ``out`` is replaced only with ``force``, and only if it is a model folder tuneforge wrote that
    holds nothing it came from: never a run directory, the source itself, or an unrelated folder."""
    if not out.exists() or not any(out.iterdir()):
        return
    if not force:
        raise RunError(f"{out} is not empty; pass --force to replace it")
    resolved, origin = out.resolve(), source.resolve()
    if resolved == origin or resolved in origin.parents or not (out / "tuneforge.json").is_file():
        raise RunError(f"{out}: --force replaces only an earlier export or pruned model, never the run itself or "
                       "another folder; choose another --out")


def _write_merged(model, run, folder: Path) -> None:
    if not hasattr(model, "save_merged"):  # a masked-LM run loads as its merged transformers model
        from tuneforge.tasks.language_models.recipe import save_masked_lm

        save_masked_lm(model, run, folder)
        return
    model.save_merged(folder)


def _write_classifier(classifier, source: Path, fmt: str, folder: Path) -> None:
    merged = classifier.merged().eval()
    started = time.perf_counter()
    if fmt == "int8":
        save_file(int8_tensors(quantize_int8(merged)), folder / INT8_FILE)
    else:
        write_onnx(merged, classifier.tokenizer, folder / ONNX_FILE)
        if fmt == "onnx-int8":
            quantize_onnx(folder / ONNX_FILE)
    merged.config.save_pretrained(folder)
    classifier.tokenizer.save_pretrained(folder)
    for code in source.glob("*.py"):  # a pruned model's own architecture file
        shutil.copy(code, folder / code.name)
    meta = classifier.meta | {"adapter": False, "format": fmt, "exported_from": str(source)}
    write_meta(folder, meta)
    print(f"export: {fmt} written in {time.perf_counter() - started:.1f} s", file=sys.stderr)


class _LogitsOnly(nn.Module):
    """The exported graph's signature: (input_ids, attention_mask) -> logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def write_onnx(model: nn.Module, tokenizer, path: Path) -> None:
    """The fp32 graph through torch.export (the dynamo exporter), batch and sequence length dynamic."""
    import onnx

    sample = tokenizer(["a first example sentence", "a second, somewhat longer example sentence"],
                       return_tensors="pt", padding=True)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence", max=_max_positions(model))
    dynamic = {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export's notes on dynamic-shape naming are not the user's concern
        torch.onnx.export(_LogitsOnly(model).eval(), (sample["input_ids"], sample["attention_mask"]), str(path),
                          dynamo=True, input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_shapes=dynamic, opset_version=ONNX_OPSET, external_data=False, verbose=False)
    graph = onnx.load(str(path))
    # The exporter's intermediate shape annotations trip ONNX Runtime's quantizer (it re-infers them); ORT
    # recomputes what it needs at load.
    del graph.graph.value_info[:]
    onnx.save(graph, str(path))


def _max_positions(model: nn.Module) -> int:
    return int(getattr(model.config, "max_position_embeddings", 512) or 512)


def quantize_onnx(path: Path) -> None:
    """ONNX Runtime dynamic int8 in place: weights int8 per channel, activations quantized per batch."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT logs advice to pre-process (for static quantization) on the root logger
    try:
        quantized = path.with_name("model-int8.onnx")
        quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8, per_channel=True)
        quantized.replace(path)
    finally:
        root.setLevel(level)
