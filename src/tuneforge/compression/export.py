"""``tuneforge export RUN --format ...``: self-contained folders that predict on their own.

Every folder holds the tokenizer, ``config.json`` (label names included) and ``tuneforge.json`` (labels,
thresholds, max length, the format), so ``tuneforge predict``, ``tuneforge eval`` and ``tuneforge serve``
load it like a run. Formats:

- ``merged``: adapters folded into a plain transformers folder (safetensors); bottleneck adapters are extra
  layers, not weight deltas, so their runs are refused here and export as the formats below.
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
    require_mergeable(folder.meta, f"--format {fmt}", traced=fmt != "merged")
    if not task.exports:
        raise ConfigError(f"{run}: a {task.name} run has no weights of its own to export")
    if folder.format != "pytorch":
        origin = folder.meta.get("exported_from")
        raise ConfigError(f"--format {fmt}: {run} is already an {folder.format} export of a {task.name} model; "
                          "exports are made from a run's own fp32 weights (int8 and ONNX from fp32 text-classification "
                          f"runs): export the run it came from{f' ({origin})' if origin else ''}")
    if fmt not in task.exports:  # e.g. int8 for an entity tagger: its formats are in the task registry
        raise ConfigError(f"--format {fmt}: a {task.name} run exports as {' or '.join(task.exports)}, not {fmt}")
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
        if hasattr(merged, "save_settings"):  # bottleneck adapters: the loader rebuilds their layers from it
            merged.save_settings(folder)
    else:
        write_onnx(merged, classifier.tokenizer, folder / ONNX_FILE)
        if fmt == "onnx-int8":
            quantize_onnx(folder / ONNX_FILE)
    merged.config.save_pretrained(folder)
    classifier.tokenizer.save_pretrained(folder)
    if hasattr(classifier, "save_decoder"):  # what decodes the graph's scores (an entity tagger's CRF)
        classifier.save_decoder(folder)
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
    inputs = (sample["input_ids"], sample["attention_mask"])
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.export's notes on dynamic-shape naming are not the user's concern
            torch.onnx.export(_LogitsOnly(model).eval(), inputs, str(path), dynamo=True,
                              input_names=["input_ids", "attention_mask"], output_names=["logits"],
                              dynamic_shapes=dynamic, opset_version=ONNX_OPSET, external_data=False, verbose=False)
    except Exception as error:  # torch.export's and the ONNX translation's own types, many of them
        raise ConfigError(f"--format onnx: torch.onnx cannot export this {_architecture(model)} model "
                          f"({type(error).__name__}: {_first_line(error)}); export it with --format merged "
                          "instead") from None
    graph = onnx.load(str(path))
    # The exporter's intermediate shape annotations trip ONNX Runtime's quantizer (it re-infers them); ORT
    # recomputes what it needs at load.
    del graph.graph.value_info[:]
    onnx.save(graph, str(path))
    check_onnx(model, path, inputs)


def check_onnx(model: nn.Module, path: Path, inputs: tuple[torch.Tensor, torch.Tensor],
               tolerance: float = 1e-3) -> None:
    """ONNX Runtime's logits on the sample equal the model's, or the export is refused (never a graph that loads
    and answers wrongly). Batch and length are changed too, up to 512 tokens, so a graph that fixed either, or
    that took one branch of a length-dependent mask, fails here."""
    from tuneforge.models.runtime import OnnxSequenceClassifier

    ids, mask = inputs
    real = ids[1][mask[1].bool()]  # the longer sample's tokens, repeated up to the longest input the model takes
    length = min(_max_positions(model), 512)
    long_ids = real.repeat(length // len(real) + 1)[:length].unsqueeze(0)
    shapes = [(ids, mask), (ids[:1, : int(mask[0].sum())], mask[:1, : int(mask[0].sum())]),
              (long_ids, torch.ones_like(long_ids))]
    graph = OnnxSequenceClassifier(path, model.config)
    with torch.no_grad():
        for shape_ids, shape_mask in shapes:
            expected = model(input_ids=shape_ids, attention_mask=shape_mask).logits.float()
            got = graph(input_ids=shape_ids, attention_mask=shape_mask).logits
            if got.shape != expected.shape:
                gap, scale = float("inf"), 1.0
            else:  # token logits (B, T, K): padded positions carry no meaning
                valid = shape_mask.bool() if expected.dim() == 3 else torch.ones(len(expected), dtype=torch.bool)
                gap = float((expected[valid] - got[valid]).abs().max())
                scale = max(1.0, float(expected[valid].abs().max()))
            if not gap <= tolerance * scale:
                raise ConfigError(f"--format onnx: the exported graph of this {_architecture(model)} model does not "
                                  f"reproduce it (largest logit difference {gap:.3g}); export it with --format merged "
                                  "instead")


def _architecture(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None) or type(model).__name__


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else "no message"


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
