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
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from tuneforge.assets import MODELS
from tuneforge.assets.datasets import check_dataset_task
from tuneforge.config import Config
from tuneforge.data.captions import ImageText, load_image_text_splits
from tuneforge.data.image_batches import EpochKeyedBatches, ImageDataset
from tuneforge.data.transforms import Augmentation, Preprocessing
from tuneforge.engine.loop import fit
from tuneforge.engine.setup import make_accelerator, process_state, seed_everything
from tuneforge.errors import ConfigError
from tuneforge.evaluation.plots import plot_training_curves
from tuneforge.evaluation.report import write_report
from tuneforge.extensions import Extension, TaskContext
from tuneforge.methods import count_parameters, describe_trainable
from tuneforge.models.frozen import SequenceFormat, VisualPrefixLM, collate
from tuneforge.models.vision import check_vision_model
from tuneforge.runs import Run, run_dir_for
from tuneforge.tasks.frozen_model import (
    LM_FOLDER,
    META_FILE,
    VISION_FILE,
    FrozenModel,
    build_vision,
    load_language_model,
    sequence_format,
)

FROZEN_METHODS = ("full", "freeze")  # the vision encoder's: all of it, or only the projection on frozen features
SAMPLE_CAPTIONS = 16
BINDING_QUESTION = "Q: What is this? A: This is a"  # as fast binding asks (tasks.frozen_eval)
_OTHER_VIEW = 1_000_003  # epoch offset that gives a repeated image an augmentation of its own


class PairDataset(Dataset):
    """Items ``{"pieces", "pixel_values", "index"}``: an image, then its caption (or question and answer).

    Caption templates are tokenized once; each (epoch, image) draws one, seeded like the augmentation.
    """

    def __init__(self, rows: list[ImageText], tokenizer, fmt: SequenceFormat, prep: Preprocessing,
                 config: Config, augmentation: Augmentation | None = None, interleaved: int = 0) -> None:
        self.images = ImageDataset([row.image for row in rows], None, prep, augmentation, config.seed)
        self.seed = config.seed
        self.vqa = config.frozen.objective == "vqa"
        self.interleaved = min(interleaved, len(rows)) if not self.vqa else 0
        if self.interleaved:
            self.question = _tokenize(tokenizer, [BINDING_QUESTION])[0]
            self.answers = [ids + [fmt.end_id] for ids in _tokenize(tokenizer, [f" {row.text}." for row in rows])]
        if self.vqa:
            questions = [config.frozen.question_template.replace("{question}", row.text) for row in rows]
            answers = [f" {row.answer}" for row in rows]
            self.prompts = _tokenize(tokenizer, questions)
            self.targets = [[ids + [fmt.end_id]] for ids in _tokenize(tokenizer, answers)]
        else:
            templates = config.frozen.caption_templates
            texts = [template.replace("{caption}", row.text) for row in rows for template in templates]
            ids = _tokenize(tokenizer, texts)
            self.targets = [[t + [fmt.end_id] for t in ids[i : i + len(templates)]]
                            for i in range(0, len(ids), len(templates))]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, key: int) -> dict:
        index, epoch = key % len(self), key // len(self)
        if self.interleaved:
            return self._interleaved(index, epoch)
        pieces = [("image", None)] + ([("text", self.prompts[index])] if self.vqa else [])
        pieces.append(("target", self._caption(index, epoch)))
        return {"pieces": pieces, "pixel_values": [self.images[key]["pixel_values"]], "index": index}

    def _caption(self, index: int, epoch: int) -> list[int]:
        options = self.targets[index]
        if len(options) == 1:
            return options[0]
        return options[int(np.random.default_rng((self.seed, epoch, index, 1)).integers(len(options)))]

    def _interleaved(self, index: int, epoch: int) -> dict:
        """``interleaved`` captioned images (this one among them), then this image again, seen through
        another augmentation, with the binding question: its caption is recalled from the context."""
        rng = np.random.default_rng((self.seed, epoch, index, 2))
        others = [int(i) for i in rng.choice(len(self) - 1, self.interleaved - 1, replace=False)]
        order = [index] + [i + (i >= index) for i in others]
        rng.shuffle(order)
        pieces, pixels = [], []
        for i in order:
            pieces += [("image", None), ("target", self._caption(i, epoch))]
            pixels.append(self.images[epoch * len(self) + i]["pixel_values"])
        pieces += [("image", None), ("text", self.question), ("target", self.answers[index])]
        pixels.append(self.images[(epoch + _OTHER_VIEW) * len(self) + index]["pixel_values"])
        return {"pieces": pieces, "pixel_values": pixels, "index": index}


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


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
    from tuneforge.tasks.frozen_eval import sample_captions

    samples = sample_captions(frozen, shown, run_dir / "sample_captions.png",
                              fz.max_new_tokens, vqa=fz.objective == "vqa", question_template=fz.question_template)
    return _finish(run_dir, config, splits, evaluation, result.history, extras, samples)


def _check_config(config: Config) -> None:
    check_vision_model(config.frozen.vision_model)
    name = config.model.name
    if name in MODELS and MODELS.get(name).kind != "causal_lm":
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


@torch.no_grad()
def caption_perplexity(model: VisualPrefixLM, dataset: Dataset, fmt: SequenceFormat, batch_size: int) -> dict:
    """Token-weighted loss and perplexity of the held-out captions (answers) given their images."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))], fmt)
        nll, n = model.target_nll({k: v.to(device) for k, v in batch.items()})
        total, count = total + nll.item(), count + int(n)
    model.train(was_training)
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": float(count)}


# --------------------------------------------------------------------------- saving and reporting


def save_model(model: VisualPrefixLM, tokenizer, folder: Path, config: Config, prep: Preprocessing) -> dict:
    """``vision.safetensors``, the tokenizer, ``tuneforge.json`` (and the LM itself only if it was trained)."""
    from tuneforge.tasks.text_classification import _portable_model_name

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.vision.state_dict().items()}, str(folder / VISION_FILE))
    tokenizer.save_pretrained(folder)
    if model.finetune_lm:
        model.lm.save_pretrained(folder / LM_FOLDER)
        tokenizer.save_pretrained(folder / LM_FOLDER)
    fz = config.frozen
    meta = {
        "task": "frozen",
        "language_model": _portable_model_name(config.model.name),
        "vision_model": fz.vision_model,
        "prefix_length": fz.prefix_length,
        "finetune_lm": fz.finetune_lm,
        "blind": fz.blind,
        "objective": fz.objective,
        "question_template": fz.question_template,
        "preprocessing": prep.to_dict(),
        "channels_last": config.image.channels_last,
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


def _finish(run_dir: Path, config: Config, splits, evaluation: dict, history: list[dict], extras: dict,
            samples: dict) -> Run:
    metrics = {"task": config.task, **evaluation, **extras, "sample_captions": samples["rows"]}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")
    curves = plot_training_curves(history, run_dir / "training_curves.png", metric=config.eval.metric)
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
        "Use it": f"```bash\ntuneforge caption {run_dir} image.png\ntuneforge ask {run_dir} --image a.png "
                  "--text \"This is a dax.\" --image q.png --text \"Q: What is this? A: This is a\"\n"
                  f"tuneforge eval {run_dir}   # binding, VQA, and perplexity next to a blind run\n```",
    }
    notes = [f"{splits.skipped_rows} bad rows skipped: " + ", ".join(f"{v} {k}" for k, v in splits.skipped.items())
             ] if splits.skipped_rows else []
    headline = evaluation.get("test") or evaluation["validation"]
    write_report(run_dir / "report.md", title=f"tuneforge run {run_dir.name}", summary=summary, metrics=headline,
                 data_notes=notes, images={"Training curves": str(curves), f"Sample {what}s": samples["image"]},
                 extra_sections=sections)
    return Run(run_dir, metrics)
