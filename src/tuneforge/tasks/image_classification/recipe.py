"""Image classification, top to bottom: images -> EfficientNet-Lite + new head -> method -> train -> report.

The same engine as text (schedules, early stopping, checkpoints, exact resume, TensorBoard), on
images decoded and augmented in DataLoader workers. ``method: {name: freeze, cache_features: true}``
runs the frozen backbone once over every image and trains the head on the stored features.

The saved ``model/`` folder holds ``model.safetensors`` (or a PEFT adapter folder for LoRA) and
``tuneforge.json`` with the labels and the preprocessing a prediction needs.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from tuneforge.assets.datasets import check_dataset_task
from tuneforge.config import Config
from tuneforge.data.image_batches import EpochKeyedBatches, FeatureDataset, ImageDataset
from tuneforge.data.images import ImageExample, read_images, resolve_image_files, thumbnail
from tuneforge.data.splits import load_splits
from tuneforge.data.text import encode_targets
from tuneforge.data.transforms import Augmentation, Preprocessing
from tuneforge.engine.loop import fit, planned_steps
from tuneforge.engine.setup import make_accelerator, process_state, seed_everything
from tuneforge.engine.sharding import gather_rows, my_share
from tuneforge.errors import ConfigError
from tuneforge.evaluation.plots import plot_image_grid, plot_per_class_accuracy
from tuneforge.extensions import Extension, Extensions, TaskContext
from tuneforge.methods import Target, apply_method, count_parameters, describe_trainable
from tuneforge.models.vision import build_classifier, check_vision_model
from tuneforge.runs import Run, finish_run, run_dir_for, write_meta
from tuneforge.tasks import TASKS
from tuneforge.tasks.classification import LabelSpace, check_metric, make_loss, score

IMAGE_METHODS = ("full", "freeze", "topk", "lora")
WRONG_SHOWN = 16


def train(config: Config, resume: str | Path | None = None, resume_force: bool = False,
          extensions: Sequence[Extension] = ()) -> Run:
    """Fine-tune an ImageNet-pretrained CNN on labelled images; returns the finished run.

    ``extensions``: training techniques that join the run (``tuneforge.extensions``; ``tuneforge distill``'s).
    """
    processes = process_state()
    config.eval.metric = config.eval.metric or "accuracy"
    _check_config(config)
    hooks, context = Extensions(extensions), TaskContext(config, logits_of=_logits)
    hooks.recipe_start(context)
    seed_everything(config)
    splits = load_image_splits(config)  # every image decoded once before any model loads
    labels = LabelSpace(splits.labels(), multi_label=False)
    check_metric(config.eval.metric, labels)
    context.labels, context.splits = labels, splits
    prep = Preprocessing.from_config(config.image)
    model = hooks.build_model(functools.partial(_new_model, config, len(labels.names)), context)
    targets, datasets = _datasets(config, splits, labels, prep, model)
    datasets["train"] = hooks.train_data(datasets["train"], context)
    context.datasets = datasets
    train_loader = _train_loader(datasets["train"], config)
    target = Target(heads=("classifier",), task_type=None, total_steps=planned_steps(config, train_loader))
    model = apply_method(model, config.method, target)
    trainable, total = count_parameters(model)
    print(f"Trainable parameters: {describe_trainable(trainable, total)}", file=sys.stderr)

    run_dir, checkpoint = run_dir_for(config, resume, resume_force, processes)
    accelerator = make_accelerator(config, run_dir)
    loss_fn = make_loss(labels, targets["train"] if config.train.class_weights == "auto" else None, logits_of=_logits)
    scorer = functools.partial(predict_probs, batch_size=config.eval.batch_size, workers=config.train.num_workers)

    def evaluate_validation(model: nn.Module) -> dict[str, float]:
        probs = scorer(accelerator.unwrap_model(model), datasets["validation"])
        metrics = score(probs, targets["validation"], labels, thresholds=None)
        metrics["loss"] = _loss(probs, targets["validation"])
        return {k: v for k, v in metrics.items() if isinstance(v, float)}

    result = fit(model, train_loader, loss_fn, evaluate_validation, config, accelerator, ("classifier",),
                 run_dir=run_dir, resume=checkpoint, extensions=extensions, context=context,
                 row_ids=lambda indices: [splits.train[i].source for i in indices])
    model = accelerator.unwrap_model(model).eval()

    probs = {name: scorer(model, datasets[name]) for name in ("validation", "test") if len(datasets[name])}
    evaluation = {name: {**score(p, targets[name], labels, None), "loss": _loss(p, targets[name])}
                  for name, p in probs.items()}
    extras = {"trainable_parameters": trainable, "total_parameters": total, "fit": result.summary()}
    more, distilled = hooks.report(context, model, evaluation)
    extras |= more
    if not processes.is_main_process:
        return Run(run_dir, {"task": config.task, **evaluation, **extras})
    save_model(model, run_dir / "model", config, labels.names, prep)
    shown = "test" if "test" in probs else "validation"
    images, sections = image_report(getattr(splits, shown), probs[shown], evaluation[shown], labels.names, run_dir,
                                    shown)
    sections |= distilled
    return finish_run(run_dir, config, splits, labels.names, evaluation, result.history, extras,
                      images=images, sections=sections, usage=TASKS.get(config.task).usage(run_dir))


def _new_model(config: Config, classes: int) -> nn.Module:
    return build_classifier(config.model.name, classes, config.image.size, config.image.dropout,
                            channels_last=config.image.channels_last)


def _datasets(config: Config, splits, labels: LabelSpace, prep: Preprocessing, model: nn.Module) -> tuple[dict, dict]:
    """Targets and datasets per split: images (training ones augmented) or, for a cached probe, features."""
    parts = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    targets = {name: encode_targets([e.label for e in rows], labels.names, False) for name, rows in parts.items()}
    datasets = {name: ImageDataset.of(rows, targets[name], prep) for name, rows in parts.items()}
    if getattr(config.method, "cache_features", False):  # the pretrained backbone's, before anything trains
        return targets, {name: FeatureDataset(features_of(model, data, config), data.targets)
                         for name, data in datasets.items()}
    augmentation = Augmentation.from_config(config.image)
    datasets["train"] = ImageDataset.of(splits.train, targets["train"], prep, augmentation, config.seed)
    return targets, datasets


def _check_config(config: Config) -> None:
    check_vision_model(config.model.name)
    if config.method.name not in IMAGE_METHODS:
        raise ConfigError(f"method.name: '{config.method.name}' is not available for image_classification; "
                          f"use one of: {', '.join(IMAGE_METHODS)}")
    if config.data.multi_label:
        raise ConfigError("data.multi_label: image_classification is single-label (one class per image)")
    if config.train.gradient_checkpointing:
        raise ConfigError("train.gradient_checkpointing: not supported for image models; lower train.batch_size")
    if config.data.dataset and not config.data.train_file:
        check_dataset_task(config.data.dataset, config.task)


def load_image_splits(config: Config):
    files, class_names = resolve_image_files(config.data)
    return load_splits(config.data, config.seed, files, functools.partial(read_images, class_names=class_names))


def _logits(model: nn.Module, batch: dict) -> torch.Tensor:
    if "features" in batch:
        return model(features=batch["features"])
    return model(pixel_values=batch["pixel_values"])


def _train_loader(dataset, config: Config) -> DataLoader:
    batches = EpochKeyedBatches(len(dataset), config.train.batch_size, config.seed)
    workers = 0 if isinstance(dataset, FeatureDataset) else config.train.num_workers
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, persistent_workers=False,
                      generator=torch.Generator().manual_seed(config.seed))


@torch.no_grad()
def predict_probs(model: nn.Module, dataset, batch_size: int = 128, workers: int = 0,
                  progress: bool = False) -> np.ndarray:
    """Class probabilities (N, L) in dataset order, from images or cached features; sharded under DDP."""
    was_training = model.training
    model.eval()
    mine = my_share(len(dataset))
    loader = DataLoader(Subset(dataset, mine), batch_size=batch_size,
                        num_workers=0 if isinstance(dataset, FeatureDataset) else workers)
    device = next(model.parameters()).device
    scores = []
    for batch in tqdm(loader, desc="predicting", unit="batch", disable=not progress, leave=False):
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        scores.append(torch.softmax(_logits(model, batch).float(), dim=-1).cpu().numpy())
    model.train(was_training)
    return gather_rows(mine, scores, len(dataset))


@torch.no_grad()
def features_of(model: nn.Module, dataset: ImageDataset, config: Config) -> torch.Tensor:
    """The frozen backbone's pooled features (N, 1280) of every image, computed once (on the GPU if any;
    each of N processes computes its share)."""
    device = PartialState().device
    model.to(device).eval()
    mine = my_share(len(dataset))
    loader = DataLoader(Subset(dataset, mine), batch_size=config.eval.batch_size, num_workers=config.train.num_workers)
    chunks = [model.features(batch["pixel_values"].to(device)).float().cpu().numpy() for batch in
              tqdm(loader, desc="caching features", unit="batch", disable=not config.output.progress)]
    return torch.from_numpy(gather_rows(mine, chunks, len(dataset)))


def _loss(probs: np.ndarray, targets: torch.Tensor) -> float:
    p = np.clip(probs[np.arange(len(probs)), targets.numpy()], 1e-7, 1.0)
    return float(-np.log(p).mean())


# --------------------------------------------------------------------------- saving and reporting


def save_model(model: nn.Module, folder: Path, config: Config, label_names: list[str], prep: Preprocessing) -> None:
    """``model.safetensors`` (or a PEFT adapter folder) plus ``tuneforge.json`` with labels and preprocessing."""
    folder.mkdir(parents=True, exist_ok=True)
    adapter = hasattr(model, "peft_config")
    if adapter:
        model.save_pretrained(folder)
    else:  # channels-last tensors are strided views; safetensors stores contiguous ones
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    meta = {
        "task": "image_classification",
        "base_model": config.model.name,
        "method": config.method.name,
        "adapter": adapter,
        "labels": label_names,
        "multi_label": False,
        "preprocessing": prep.to_dict(),
        "dropout": config.image.dropout,
        "channels_last": config.image.channels_last,
        "image_column": config.data.image_column,
        "label_column": config.data.label_column,
        # built-in IDX data names its integer classes (fashion-mnist); `eval --data` on IDX files needs the names
        "idx_class_names": resolve_image_files(config.data)[1],
    }
    write_meta(folder, meta)


def image_report(examples: list[ImageExample], probs: np.ndarray, metrics: dict, label_names: list[str],
                 out_dir: Path, split: str) -> tuple[dict[str, str], dict[str, str]]:
    """Per-class accuracy (table and bars) and the grid of the most confidently wrong images."""
    accuracy = {name: metrics["per_class"][name]["recall"] for name in label_names
                if metrics["per_class"][name]["support"] > 0}
    rows = sorted(accuracy.items(), key=lambda item: item[1])
    table = "\n".join(["| class | accuracy | images |", "|---|---:|---:|"]
                      + [f"| {name} | {value:.4f} | {int(metrics['per_class'][name]['support'])} |"
                         for name, value in rows])
    images = {"Per-class accuracy": str(plot_per_class_accuracy(accuracy, out_dir / "per_class_accuracy.png"))}
    wrong = confidently_wrong(examples, probs, label_names)
    grid = plot_image_grid([thumbnail(e.image) for e, _, _ in wrong],
                           [f"true: {e.label}\npred: {p} ({c:.2f})" for e, p, c in wrong],
                           out_dir / "confidently_wrong.png", title=f"Most confidently wrong ({split} split)")
    images["Most confidently wrong images"] = str(grid)
    sections = {"Per-class accuracy": f"Share of each class's {split} images predicted right, worst first.\n\n"
                                      + table}
    return images, sections


def confidently_wrong(examples: list[ImageExample], probs: np.ndarray, label_names: list[str],
                      limit: int = WRONG_SHOWN) -> list[tuple[ImageExample, str, float]]:
    """(example, predicted label, its probability) of the wrong predictions made with the most confidence."""
    predicted = probs.argmax(axis=1)
    index = {name: i for i, name in enumerate(label_names)}
    wrong = [i for i, e in enumerate(examples) if predicted[i] != index[e.label]]
    wrong.sort(key=lambda i: -probs[i, predicted[i]])
    return [(examples[i], label_names[predicted[i]], float(probs[i, predicted[i]])) for i in wrong[:limit]]


