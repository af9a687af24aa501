"""Frozen, top to bottom: image-text pairs -> vision encoder + frozen LM -> captioning (or VQA) -> report.

Only the vision encoder and its projection train; the language model's parameters have
``requires_grad=False`` and are not in the optimizer, so its weights stay bit-identical (a test checks
their hash) unless ``frozen.finetune_lm`` asks for the paper's fine-tuned ablation. The saved
``model/`` folder holds ``vision.safetensors``, the tokenizer and ``tuneforge.json``; the language model
itself is the registered base model (or ``language_model/`` when it was fine-tuned).
"""

from __future__ import annotations

import functools
import hashlib
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from tuneforge.assets import MODELS, portable_model_name
from tuneforge.assets.datasets import check_dataset_task
from tuneforge.config import Config
from tuneforge.data.captions import load_image_text_splits
from tuneforge.data.image_batches import EpochKeyedBatches
from tuneforge.data.transforms import Augmentation, Preprocessing
from tuneforge.engine.loop import fit
from tuneforge.engine.setup import make_accelerator, process_state, seed_everything
from tuneforge.errors import ConfigError
from tuneforge.extensions import Extension, TaskContext
from tuneforge.methods import count_parameters, describe_trainable
from tuneforge.models.vision import check_vision_model
from tuneforge.runs import Run, run_dir_for, write_meta
from tuneforge.runs.finish import RunReport, write_run
from tuneforge.tasks import TASKS
from tuneforge.tasks.frozen.data import PairDataset, caption_perplexity
from tuneforge.tasks.frozen.model import (
    LM_FOLDER,
    VISION_FILE,
    FrozenModel,
    build_vision,
    load_language_model,
    sequence_format,
)
from tuneforge.tasks.frozen.network import SequenceFormat, VisualPrefixLM, collate

FROZEN_METHODS = ("full", "freeze")  # the vision encoder's: all of it, or only the projection on frozen features
SAMPLE_CAPTIONS = 16
def train(config: Config, resume: str | Path | None = None, resume_force: bool = False,
          extensions: Sequence[Extension] = ()) -> Run:
    """Train the vision encoder to caption (or answer) for the frozen language model; returns the run.

    ``extensions``: training techniques that join the training loop (``tuneforge.extensions``).
    """
    processes = process_state()
    config.eval.metric = config.eval.metric or "perplexity"
    _check_config(config)
    seed_everything(config)
    fz = config.frozen
    splits = load_image_text_splits(config.data, config.seed, answers=fz.objective == "vqa",
                                    language=fz.caption_language)  # every image checked before models load
    tokenizer, lm = load_language_model(config.model.name)
    fmt = sequence_format(tokenizer, fz.prefix_length)
    model = build_model(config, lm)
    prep = Preprocessing.from_config(config.image)
    datasets = {name: PairDataset(getattr(splits, name), tokenizer, fmt, prep, config)
                for name in ("validation", "test")}
    datasets["train"] = PairDataset(splits.train, tokenizer, fmt, prep, config, Augmentation.from_config(config.image),
                                    interleaved=fz.interleaved)
    lm_before = weights_digest(model.lm)
    trainable, total = count_parameters(model)
    print(f"Trainable parameters: {describe_trainable(trainable, total)}", file=sys.stderr)

    run_dir, checkpoint = run_dir_for(config, resume, resume_force, processes)
    accelerator = make_accelerator(config, run_dir)
    eval_batch = min(config.eval.batch_size, config.train.batch_size)

    def evaluate_validation(model) -> dict[str, float]:
        return caption_perplexity(accelerator.unwrap_model(model), datasets["validation"], fmt, eval_batch)

    # The optimizer's "head" group is the LM when it trains: it needs a far smaller step than the vision side.
    result = fit(model, _train_loader(datasets["train"], fmt, config), lambda m, batch: m(**batch),
                 evaluate_validation, config, accelerator, ("lm",) if fz.finetune_lm else (), run_dir=run_dir,
                 resume=checkpoint, row_ids=lambda indices: [splits.train[i].source for i in indices],
                 head_lr=fz.lm_lr if fz.finetune_lm else None, extensions=extensions,
                 context=TaskContext(config, tokenizer=tokenizer, splits=splits, datasets=datasets))
    model = accelerator.unwrap_model(model).eval()
    evaluation = {name: caption_perplexity(model, datasets[name], fmt, eval_batch)
                  for name in ("validation", "test") if len(datasets[name])}
    extras = {"trainable_parameters": trainable, "total_parameters": total, "fit": result.summary(),
              "counts": {name: len(getattr(splits, name)) for name in ("train", "validation", "test")},
              "lm_sha256_before": lm_before, "lm_sha256_after": weights_digest(model.lm)}
    if not processes.is_main_process:
        return Run(run_dir, {"task": config.task, **evaluation, **extras})
    meta = save_model(model, tokenizer, run_dir / "model", config, prep)
    frozen = FrozenModel(model, tokenizer, prep, fmt, meta, source=str(run_dir))
    held_out = splits.test or splits.validation
    shown = held_out[:: max(1, len(held_out) // SAMPLE_CAPTIONS)][:SAMPLE_CAPTIONS]  # spread over the split
    from tuneforge.tasks.frozen.evaluation import sample_captions

    samples = sample_captions(frozen, shown, run_dir / "sample_captions.png",
                              fz.max_new_tokens, vqa=fz.objective == "vqa", question_template=fz.question_template)
    return _finish(run_dir, config, splits, evaluation, result.history, extras, samples)


def _check_config(config: Config) -> None:
    check_vision_model(config.frozen.vision_model)
    name = config.model.name
    if name in MODELS and MODELS.get(name).kind != "decoder":
        raise ConfigError(f"model.name: '{name}' is a {MODELS.get(name).kind} model; frozen needs a causal LM "
                          "(e.g. smollm2-135m) to read the visual prefix")
    if config.method.name not in FROZEN_METHODS:
        raise ConfigError(f"method.name: '{config.method.name}' is not available for frozen; use full (the whole "
                          "vision encoder trains) or freeze (only its projection); the language model stays "
                          "frozen unless frozen.finetune_lm")
    if config.eval.metric not in ("perplexity", "loss"):
        raise ConfigError(f"eval.metric: '{config.eval.metric}' is not measured for frozen; use perplexity or loss")
    if config.frozen.interleaved and config.frozen.objective == "vqa":
        raise ConfigError("frozen.interleaved: only for captioning (frozen.objective: caption)")
    if config.train.head_lr is not None:
        raise ConfigError("train.head_lr: not used by frozen; train.lr is the vision encoder's and frozen.lm_lr "
                          "the language model's (with frozen.finetune_lm)")
    if config.train.gradient_checkpointing:
        raise ConfigError("train.gradient_checkpointing: not supported for frozen; lower train.batch_size")
    if config.frozen.finetune_lm and config.frozen.blind:
        raise ConfigError("frozen.blind with frozen.finetune_lm: the blind baseline keeps the language model frozen")
    if config.data.dataset and not config.data.train_file:
        check_dataset_task(config.data.dataset, config.task)
        if config.data.dataset == "easy-vqa" and config.frozen.objective != "vqa":
            raise ConfigError("data.dataset: easy-vqa holds questions and answers; set frozen.objective: vqa")


def build_model(config: Config, lm) -> VisualPrefixLM:
    fz = config.frozen
    vision = build_vision(fz.vision_model, config.image.size, fz.prefix_length, lm.get_input_embeddings().embedding_dim,
                          pretrained=fz.vision_pretrained, channels_last=config.image.channels_last)
    if config.method.name == "freeze":
        vision.backbone.requires_grad_(False)
    # Start the prefix at the scale of word embeddings (pooled features are O(1)): a default-initialised
    # projection writes vectors ~5x larger than any token's, and the frozen LM starts out reading noise.
    scale = lm.get_input_embeddings().weight.detach().pow(2).mean().sqrt().item()
    with torch.no_grad():
        vision.classifier.weight.normal_(0.0, scale / math.sqrt(vision.classifier.in_features))
        vision.classifier.bias.zero_()
    return VisualPrefixLM(vision, lm, fz.prefix_length, finetune_lm=fz.finetune_lm, blind=fz.blind)


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over every parameter's bytes, in name order: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for name, parameter in sorted(module.named_parameters()):
        digest.update(name.encode())
        digest.update(parameter.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _train_loader(dataset: PairDataset, fmt: SequenceFormat, config: Config) -> DataLoader:
    batches = EpochKeyedBatches(len(dataset), config.train.batch_size, config.seed)
    return DataLoader(dataset, batch_sampler=batches, collate_fn=functools.partial(collate, fmt=fmt),
                      num_workers=config.train.num_workers, generator=torch.Generator().manual_seed(config.seed))


# --------------------------------------------------------------------------- saving and reporting


def save_model(model: VisualPrefixLM, tokenizer, folder: Path, config: Config, prep: Preprocessing) -> dict:
    """``vision.safetensors``, the tokenizer, ``tuneforge.json`` (and the LM itself only if it was trained)."""

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.vision.state_dict().items()}, str(folder / VISION_FILE))
    tokenizer.save_pretrained(folder)
    if model.finetune_lm:
        model.lm.save_pretrained(folder / LM_FOLDER)
        tokenizer.save_pretrained(folder / LM_FOLDER)
    fz = config.frozen
    meta = {
        "task": "frozen",
        "language_model": portable_model_name(config.model.name),
        "vision_model": fz.vision_model,
        "prefix_length": fz.prefix_length,
        "finetune_lm": fz.finetune_lm,
        "blind": fz.blind,
        "objective": fz.objective,
        "question_template": fz.question_template,
        "preprocessing": prep.to_dict(),
        "channels_last": config.image.channels_last,
    }
    write_meta(folder, meta)
    return meta


def _finish(run_dir: Path, config: Config, splits, evaluation: dict, history: list[dict], extras: dict,
            samples: dict) -> Run:
    fz, fit_summary = config.frozen, extras["fit"]
    variant = ", ".join(word for word, on in (("blind", fz.blind), ("LM fine-tuned", fz.finetune_lm),
                                               ("vision from scratch", not fz.vision_pretrained)) if on)
    summary = {
        "task": f"frozen ({fz.objective}{', ' + variant if variant else ''})",
        "language model": f"{config.model.name} ({'trained' if fz.finetune_lm else 'frozen'})",
        "vision encoder": f"{fz.vision_model} ({'ImageNet' if fz.vision_pretrained else 'scratch'}), "
                          f"{fz.prefix_length} prefix embeddings per image",
        "trainable parameters": describe_trainable(extras["trainable_parameters"], extras["total_parameters"]),
        "data": ", ".join(f"{k}: {v}" for k, v in splits.sources.items()),
        "examples": ", ".join(f"{k} {v:,}" for k, v in extras["counts"].items()),
        "optimizer steps": f"{fit_summary['steps']:,} (best at step {fit_summary['best_step']})",
        "training time": f"{fit_summary['train_seconds']:.1f} s ({fit_summary['train_samples_per_second']:.1f} "
                         "images/s)",
        "seed": str(config.seed),
        "language model weights": "bit-identical after training (sha256 of every parameter)"
        if extras["lm_sha256_before"] == extras["lm_sha256_after"] else "changed by training (finetune_lm)",
    }
    rows = "\n".join(f"| {split} | {m['perplexity']:.2f} | {m['loss']:.4f} | {int(m['tokens']):,} |"
                     for split, m in evaluation.items())
    what = "answer" if fz.objective == "vqa" else "caption"
    sections = {
        f"Held-out {what} perplexity": f"| split | perplexity | loss | tokens scored |\n|---|---|---|---|\n{rows}",
        f"Sample {what}s": samples["table"],
    }
    notes = [f"{splits.skipped_rows} bad rows skipped: " + ", ".join(f"{v} {k}" for k, v in splits.skipped.items())
             ] if splits.skipped_rows else []
    headline = evaluation.get("test") or evaluation["validation"]
    report = RunReport(summary, headline, notes=notes, images={f"Sample {what}s": samples["image"]},
                       sections=sections, usage=TASKS.get(config.task).usage(run_dir))
    return write_run(run_dir, config, {**evaluation, **extras, "sample_captions": samples["rows"]}, history, report)
