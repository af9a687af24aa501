"""Training extensions: techniques that join a run through named events, so no recipe or loop names them.

An ``Extension`` (MosaicML Composer's algorithms are the model) overrides the hooks it needs; every hook is a
no-op by default. Recipes fire the recipe-level events; ``engine.loop.fit`` fires the training events, in
list order, with a ``FitState`` that the hooks read and may change.

Recipe-level events (the recipe passes a ``TaskContext`` it fills in as it learns about the task):

- ``recipe_start(context)``: refuse settings that cannot work, before any data or model loads.
- ``build_model(make, context)``: ``make()`` builds the recipe's own model (and tokenizer); return it,
  adapted, or something else in the same shape without calling it (distillation's layer-dropped student).
- ``train_data(dataset, context)``: the training set, extended or replaced (unlabelled texts, replay, pseudo-labels).
- ``report(context, model, evaluation)``: ``(metrics.json extras, report sections)`` after the final evaluation.

Training events (``fit``), in the order they happen:

- ``fit_start(state)``: the prepared model, optimizer, loader, config and context; may replace ``state.loss_fn``
  (a technique with its own objective) or precompute from the data (a teacher's logits, Fisher information).
- ``transform_batch(state, batch)``: the batch the loss sees (augmentation, replay mixing).
- ``loss_terms(state, batch, loss)``: the loss with this extension's terms added (regularisers, EWC).
- ``after_backward(state, batch)``: gradients of this micro-batch exist; may run another forward/backward
  (adversarial training) before clipping and the optimizer step.
- ``after_optimizer_step(state)``: once per optimizer step, before gradients are cleared (``state.step`` counts
  the steps before this one).
- ``eval_metrics(state, metrics)``: the validation metrics, with any this extension adds.
- ``fit_end(state, result)``: training over, the best weights restored into the model.
- ``state_dict()`` / ``load_state_dict(state)``: everything a checkpoint needs so a resumed run continues
  exactly (tensors, lists, numbers, strings: what ``torch.load(weights_only=True)`` reads back).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tuneforge.errors import RunError

LossFn = Callable[[nn.Module, dict], torch.Tensor]


@dataclass
class TaskContext:
    """What a recipe tells extensions about its task; fields are filled in as the recipe learns them."""

    config: Any  # the run's Config
    labels: Any = None  # classification: the label space (``names``, ``multi_label``)
    tokenizer: Any = None  # text and language-model tasks: the one ``build_model`` returned
    splits: Any = None  # the validated raw rows (``splits.train``, ``.validation``, ``.test``)
    datasets: dict[str, Any] = field(default_factory=dict)  # per split, as the model reads them
    logits_of: Callable[[nn.Module, dict], torch.Tensor] | None = None  # classifiers: (model, batch) -> logits
    # Tasks whose training rows are text: ``remake_batch(batch, change)`` rebuilds a training batch after
    # ``change(index, row) -> row | None`` saw each raw training row (None: keep the item as the loader made it);
    # augmentation uses it. Rows are ``Example`` (text classification) or ``TaggedText`` (token classification).
    remake_batch: Callable[[dict, Callable[[int, Any], Any]], dict] | None = None


@dataclass
class FitState:
    """The training state every fit event sees; extensions read it and may change what they own."""

    model: nn.Module  # as prepared by Accelerate (DDP-wrapped under N processes); see ``unwrapped``
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_loader: Any
    config: Any
    accelerator: Any
    loss_fn: LossFn  # the task's loss; an extension with its own objective replaces it at fit start
    total_steps: int
    run_dir: Path | None = None
    context: TaskContext | None = None
    step: int = 0  # optimizer steps done
    epoch: int = 0

    @property
    def unwrapped(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)


class Extension:
    """A training technique: override the hooks it needs (see the module docstring for when each runs)."""

    name: str = ""  # the key of its state in checkpoints; the class name when empty

    # ------------------------------------------------------------------ recipe-level events

    def recipe_start(self, context: TaskContext) -> None:
        """Refuse settings this technique cannot work with, before any data or model loads."""

    def build_model(self, make: Callable[[], Any], context: TaskContext) -> Any:
        """The recipe's model (and tokenizer), as ``make()`` builds them, possibly adapted or replaced."""
        return make()

    def train_data(self, dataset: Any, context: TaskContext) -> Any:
        """The training dataset, possibly extended."""
        return dataset

    def report(self, context: TaskContext, model: nn.Module, evaluation: dict) -> tuple[dict, dict[str, str]]:
        """``(metrics.json extras, report sections by title)`` for the finished run."""
        return {}, {}

    # ------------------------------------------------------------------ training events

    def fit_start(self, state: FitState) -> None:
        """Set up with the prepared model and data (before a resumed run's state is loaded)."""

    def transform_batch(self, state: FitState, batch: dict) -> dict:
        return batch

    def loss_terms(self, state: FitState, batch: dict, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def after_backward(self, state: FitState, batch: dict) -> None:
        """After ``backward`` of a micro-batch, before gradient clipping and the optimizer step."""

    def after_optimizer_step(self, state: FitState) -> None:
        """After an optimizer step (end of an accumulation window), before gradients are cleared."""

    def eval_metrics(self, state: FitState, metrics: dict[str, float]) -> dict[str, float]:
        return metrics

    def fit_end(self, state: FitState, result: Any) -> None:
        """After training, with the best weights back in the model; ``result`` is the ``FitResult``."""

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned; called after ``fit_start`` when a run resumes."""


class Extensions:
    """Fires each event on every extension, in list order; what one returns is what the next one gets."""

    def __init__(self, extensions: Sequence[Extension] = ()) -> None:
        self.items = list(extensions)
        self.keys = _unique_keys(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def recipe_start(self, context: TaskContext) -> None:
        for extension in self.items:
            extension.recipe_start(context)

    def build_model(self, make: Callable[[], Any], context: TaskContext) -> Any:
        for extension in self.items:  # the first extension's make() is the recipe's own builder
            make = _bind(extension.build_model, make, context)
        return make()

    def train_data(self, dataset: Any, context: TaskContext) -> Any:
        for extension in self.items:
            dataset = extension.train_data(dataset, context)
        return dataset

    def report(self, context: TaskContext, model: nn.Module, evaluation: dict) -> tuple[dict, dict[str, str]]:
        extras: dict = {}
        sections: dict[str, str] = {}
        for extension in self.items:
            more, more_sections = extension.report(context, model, evaluation)
            extras |= more
            sections |= more_sections
        return extras, sections

    def fit_start(self, state: FitState) -> None:
        for extension in self.items:
            extension.fit_start(state)

    def transform_batch(self, state: FitState, batch: dict) -> dict:
        for extension in self.items:
            batch = extension.transform_batch(state, batch)
        return batch

    def loss_terms(self, state: FitState, batch: dict, loss: torch.Tensor) -> torch.Tensor:
        for extension in self.items:
            loss = extension.loss_terms(state, batch, loss)
        return loss

    def after_backward(self, state: FitState, batch: dict) -> None:
        for extension in self.items:
            extension.after_backward(state, batch)

    def after_optimizer_step(self, state: FitState) -> None:
        for extension in self.items:
            extension.after_optimizer_step(state)

    def eval_metrics(self, state: FitState, metrics: dict[str, float]) -> dict[str, float]:
        for extension in self.items:
            metrics = extension.eval_metrics(state, metrics)
        return metrics

    def fit_end(self, state: FitState, result: Any) -> None:
        for extension in self.items:
            extension.fit_end(state, result)

    def state_dict(self) -> dict[str, dict]:
        """Each extension's state under its key; extensions without state are left out."""
        states = {key: extension.state_dict() for key, extension in zip(self.keys, self.items, strict=True)}
        return {key: state for key, state in states.items() if state}

    def load_state_dict(self, states: dict[str, dict], source: Path) -> None:
        """Restore each extension's state; one that has state but finds none in the checkpoint is refused.

        Raises:
            RunError: naming the checkpoint and the extension, when the checkpoint was written without it.
        """
        for key, extension in zip(self.keys, self.items, strict=True):
            if key in states:
                extension.load_state_dict(states[key])
            elif extension.state_dict():
                raise RunError(f"{source} holds no state for the training extension '{key}' (written by an older "
                               "tuneforge, or by a run without it), so the run cannot continue exactly; start it "
                               "again")


def _bind(hook: Callable, make: Callable[[], Any], context: TaskContext) -> Callable[[], Any]:
    return lambda: hook(make, context)


def _unique_keys(extensions: list[Extension]) -> list[str]:
    keys: list[str] = []
    for extension in extensions:
        base = extension.name or type(extension).__name__
        key, n = base, 1
        while key in keys:
            n += 1
            key = f"{base}#{n}"
        keys.append(key)
    return keys
