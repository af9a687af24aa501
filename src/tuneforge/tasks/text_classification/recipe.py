"""Text classification, top to bottom: data -> model -> method -> train -> evaluate -> save -> report.

Single-label (softmax, cross-entropy) and multi-label (sigmoid, BCE, per-label thresholds tuned on
validation). The saved ``model/`` folder is a plain Hugging Face folder (or a PEFT adapter folder for
LoRA) plus ``tuneforge.json`` with what transformers has no slot for (thresholds, max length, method).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tuneforge.assets import MODELS, resolve_model
from tuneforge.assets.datasets import check_dataset_task
from tuneforge.config import Config
from tuneforge.data.coverage import check_coverage
from tuneforge.data.readers import Example
from tuneforge.data.splits import load_splits
from tuneforge.data.text import (
    PadCollator,
    SeededBatches,
    TokenizedTexts,
    encode_targets,
    tokenize,
)
from tuneforge.engine.loop import fit, planned_steps
from tuneforge.engine.setup import apply_memory_settings, make_accelerator, process_state, seed_everything
from tuneforge.engine.sharding import gather_rows, my_share
from tuneforge.errors import ConfigError, RegistryError
from tuneforge.evaluation.metrics import tune_thresholds
from tuneforge.extensions import Extension, Extensions, TaskContext
from tuneforge.methods import Target, apply_method, count_parameters, describe_trainable, head_module_names
from tuneforge.runs import Run, finish_run, run_dir_for, write_meta
from tuneforge.runs.reader import trained_meta
from tuneforge.tasks import TASKS
from tuneforge.tasks.classification import LabelSpace, check_metric, loss_from_probs, make_loss, score

# --------------------------------------------------------------------------- the recipe


def train(config: Config, resume: str | Path | None = None, resume_force: bool = False,
          extensions: Sequence[Extension] = ()) -> Run:
    """Fine-tune a pretrained encoder on labelled text; returns the finished run.

    ``resume`` ("latest", a run directory or a checkpoint) continues an interrupted run exactly.
    ``extensions``: training techniques that join the run (``tuneforge.extensions``; ``tuneforge distill``'s).
    """
    processes = process_state()  # first: libraries below may set up Accelerate's state otherwise
    config.eval.metric = config.eval.metric or "accuracy"
    if getattr(config.method, "cache_features", False):
        raise ConfigError("method.cache_features: only image_classification caches features; set it false")
    hooks, context = Extensions(extensions), TaskContext(config, logits_of=text_logits)
    hooks.recipe_start(context)
    seed_everything(config)
    if config.data.dataset and not config.data.train_file:
        check_dataset_task(config.data.dataset, config.task)
    splits = load_splits(config.data, config.seed)  # every row validated before any model loads
    labels = LabelSpace(splits.labels(), config.data.multi_label)
    check_metric(config.eval.metric, labels)
    context.labels, context.splits = labels, splits

    tokenizer, model = hooks.build_model(lambda: build_model(config.model.name, labels), context)
    context.tokenizer = tokenizer
    check_coverage([e.text for e in splits.train], tokenizer, config.model.name, config.data.allow_unknown_tokens)
    _check_max_length(model, config.data.max_length)
    apply_memory_settings(model, config)
    datasets = {name: _dataset(rows, tokenizer, labels, config.data.max_length)
                for name, rows in (("train", splits.train), ("validation", splits.validation), ("test", splits.test))}
    datasets["train"] = hooks.train_data(datasets["train"], context)
    context.datasets = datasets
    pad_id = tokenizer.pad_token_id or 0
    context.remake_batch = batch_remaker(splits.train, datasets["train"], tokenizer, config.data.max_length, pad_id)
    train_loader = _train_loader(datasets["train"], pad_id, config)
    heads = tuple(head_module_names(model))
    target = Target(heads=heads, task_type="SEQ_CLS", total_steps=planned_steps(config, train_loader),
                    tokenizer_path=resolve_model(config.model.name))
    model = apply_method(model, config.method, target)
    trainable, total = count_parameters(model)
    print(f"Trainable parameters: {describe_trainable(trainable, total)}", file=sys.stderr)
    run_dir, checkpoint = run_dir_for(config, resume, resume_force, processes)

    accelerator = make_accelerator(config, run_dir)
    loss_fn = make_loss(labels, datasets["train"].targets if config.train.class_weights == "auto" else None,
                        logits_of=text_logits)
    evaluate_validation = _validation_scorer(accelerator, datasets["validation"], pad_id, config, labels)
    result = fit(model, train_loader, loss_fn, evaluate_validation, config, accelerator, heads, run_dir=run_dir,
                 resume=checkpoint, extensions=extensions, context=context,
                 row_ids=lambda indices: [_row_source(splits.train, i) for i in indices])
    model = accelerator.unwrap_model(model).eval()

    evaluation, thresholds = _final_evaluation(model, datasets, pad_id, config, labels)
    extras = {"trainable_parameters": trainable, "total_parameters": total, "fit": result.summary()}
    more, sections = hooks.report(context, model, evaluation)
    extras |= more
    if not processes.is_main_process:  # one process writes the model and the report
        return Run(run_dir, {"task": config.task, **evaluation, **extras})
    save_model(model, tokenizer, run_dir / "model", config, labels, thresholds)
    return finish_run(run_dir, config, splits, labels.names, evaluation, result.history, extras, sections=sections,
                      usage=TASKS.get(config.task).usage(run_dir))


def _validation_scorer(accelerator, dataset: TokenizedTexts, pad_id: int, config: Config, labels: LabelSpace):
    def evaluate_validation(model: nn.Module) -> dict[str, float]:
        # unwrapped: a DDP forward broadcasts buffers, a collective that ranks doing different numbers
        # of evaluation batches would never complete
        probs = predict_probs(accelerator.unwrap_model(model), dataset, pad_id, config.eval.batch_size,
                              labels.multi_label)
        metrics = score(probs, dataset.targets, labels, thresholds=None)
        metrics["loss"] = loss_from_probs(probs, dataset.targets, labels)
        return {k: v for k, v in metrics.items() if isinstance(v, float)}

    return evaluate_validation


def _row_source(rows: list[Example], index: int) -> str:
    return rows[index].source if index < len(rows) else f"unlabelled text {index - len(rows) + 1}"


def _check_max_length(model: nn.Module, max_length: int) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ConfigError(f"data.max_length {max_length} exceeds what the model can read ({limit} tokens)")


def build_model(name: str, labels: LabelSpace) -> tuple:
    """Tokenizer and a sequence-classification model with a fresh head for ``labels``."""
    if name in MODELS and MODELS.get(name).kind == "vision":
        raise ConfigError(f"model.name: '{name}' is an image model; text classification needs a text model "
                          f"(`tuneforge list models`)")
    path = resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(labels.names),
            id2label=dict(enumerate(labels.names)),
            label2id={name: i for i, name in enumerate(labels.names)},
            problem_type="multi_label_classification" if labels.multi_label else "single_label_classification",
            ignore_mismatched_sizes=True,  # a checkpoint with another head (other labels) is a fine start
        )
    except OSError as error:  # a hub id while offline, or a folder that is not a model
        raise RegistryError(f"model '{name}' could not be loaded: {str(error).splitlines()[0]} "
                            f"(registered models: `tuneforge list models`)") from None
    if tokenizer.pad_token_id is None:  # decoders (Llama...) ship no pad token
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def text_logits(model: nn.Module, batch: dict) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


# --------------------------------------------------------------------------- data plumbing


def _dataset(rows: list[Example], tokenizer, labels: LabelSpace, max_length: int) -> TokenizedTexts:
    targets = encode_targets([r.label for r in rows], labels.names, labels.multi_label) if rows else None
    return TokenizedTexts(tokenize([r.text for r in rows], tokenizer, max_length) if rows else [], targets)


def batch_remaker(rows: list[Example], dataset: TokenizedTexts, tokenizer, max_length: int, pad_id: int):
    """``TaskContext.remake_batch``: a training batch rebuilt after ``change(index, row)`` saw each labelled row."""
    collate = PadCollator(pad_id)

    def remake(batch: dict, change) -> dict:
        items = []
        for index in batch["index"].tolist():
            # rows past the labelled ones were added by an extension (distillation's unlabelled texts): kept
            changed = change(index, rows[index]) if index < len(rows) else None
            item = dataset[index]
            if changed is not None:
                item = {**item, "input_ids": tokenize([changed.text], tokenizer, max_length)[0]}
            items.append(item)
        return collate(items)

    return remake


def _train_loader(dataset: TokenizedTexts, pad_id: int, config: Config) -> DataLoader:
    mode = "grouped" if config.train.group_by_length else "random"
    batches = SeededBatches(dataset.lengths(), config.train.batch_size, config.seed, mode)
    # A private generator: starting an epoch must not draw from the global RNG (dropout's), or a
    # resumed run would see different dropout masks than an uninterrupted one.
    return DataLoader(dataset, batch_sampler=batches, collate_fn=PadCollator(pad_id),
                      num_workers=config.train.num_workers, generator=torch.Generator().manual_seed(config.seed))


@torch.no_grad()
def predict_probs(model: nn.Module, dataset: TokenizedTexts, pad_id: int, batch_size: int,
                  multi_label: bool) -> np.ndarray:
    """Class probabilities (N, L) in dataset order; batches sorted by length to skip padding.

    Under N processes each scores every N-th example and the pieces are gathered, so every example is
    scored exactly once whatever the split sizes.
    """
    was_training = model.training
    model.eval()
    mine = my_share(len(dataset))
    batches = SeededBatches([len(dataset.input_ids[i]) for i in mine], batch_size, mode="sorted")
    device = model.device  # transformers models and tuneforge's exported ones (ONNX, int8) all say where they run
    rows, scores = [], []
    for batch_positions in batches:
        indices = [mine[p] for p in batch_positions]
        batch = PadCollator(pad_id)([dataset[i] for i in indices])
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits.float()
        probs = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
        rows += indices
        scores.append(probs.cpu().numpy())
    model.train(was_training)
    return gather_rows(rows, scores, len(dataset))


# --------------------------------------------------------------------------- scoring


def _final_evaluation(model, datasets: dict[str, TokenizedTexts], pad_id: int, config: Config,
                      labels: LabelSpace) -> tuple[dict[str, dict], list[float] | None]:
    """Metrics of the best model on validation and test; multi-label thresholds tuned on validation."""
    probs = {
        split: predict_probs(model, datasets[split], pad_id, config.eval.batch_size, labels.multi_label)
        for split in ("validation", "test")
        if len(datasets[split])
    }
    thresholds = None
    if labels.multi_label:
        thresholds = tune_thresholds(datasets["validation"].targets.numpy().astype(int), probs["validation"])
    evaluation = {}
    for split, split_probs in probs.items():
        evaluation[split] = score(split_probs, datasets[split].targets, labels, thresholds)
        evaluation[split]["loss"] = loss_from_probs(split_probs, datasets[split].targets, labels)
    return evaluation, thresholds


# --------------------------------------------------------------------------- saving


def save_model(model: nn.Module, tokenizer, folder: Path, config: Config, labels: LabelSpace,
               thresholds: list[float] | None) -> None:
    """An HF folder (safetensors) or, for adapters, a PEFT folder; plus the tokenizer and tuneforge.json."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    meta = trained_meta(config, model) | {
        "labels": labels.names,
        "multi_label": labels.multi_label,
        "thresholds": thresholds,
        "max_length": config.data.max_length,
        "text_column": config.data.text_column,
        "label_column": config.data.label_column,
        "label_separator": config.data.label_separator,
    }
    write_meta(folder, meta)


