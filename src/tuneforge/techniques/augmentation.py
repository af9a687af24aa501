"""``data.augment``: EDA-style augmentation of training text, drawn per example and epoch, for any text task.

Each training example is augmented (with probability ``data.augment.probability``) by a ``random.Random`` seeded
from (run seed, epoch, example index) alone, so a batch's augmented text is a pure function of where it sits in
training: repeats give the same text, a resumed run continues exactly, and no global random stream is touched
(dropout's stays as it was). The task rebuilds the batch (``TaskContext.remake_batch``): text classification
re-tokenizes the text, token classification re-aligns the words and tags of a sentence whose entities the
augmenter kept intact (``tuneforge.data.augment``).
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.extensions import Extension, FitState, TaskContext

_SHOWN_EXAMPLES = 5  # augmented examples in the report: what the model actually saw


class Augmentation(Extension):
    """Each epoch, a seeded share of the training texts is replaced by an augmented variant."""

    name = "augmentation"

    def __init__(self, settings, seed: int) -> None:
        self.settings, self.seed = settings, seed
        self.augmenter = None
        self.seen = self.changed = 0  # training items seen / augmented (checkpointed: the report counts a whole run)
        self.seconds = 0.0

    def recipe_start(self, context: TaskContext) -> None:
        from tuneforge.data.augment import TextAugmenter

        s = self.settings  # built now: a missing synonym table is an error before any data or model loads
        self.augmenter = TextAugmenter(synonym=s.synonym, insert=s.insert, swap=s.swap, delete=s.delete,
                                       char_noise=s.char_noise, language=s.language)

    def fit_start(self, state: FitState) -> None:
        if state.context is None or state.context.remake_batch is None:
            raise ConfigError(f"data.augment: task {state.config.task} has no training text to augment (text and "
                              "token classification do); remove data.augment")

    def transform_batch(self, state: FitState, batch: dict) -> dict:
        started, epoch = time.perf_counter(), state.epoch
        changed = 0

        def change(index: int, row: Any) -> Any:
            nonlocal changed
            variant = self.variant(row, index, epoch)
            changed += variant is not None
            return variant

        batch = state.context.remake_batch(batch, change)
        self.seen += len(batch["index"])
        self.changed += changed
        self.seconds += time.perf_counter() - started
        return batch

    def variant(self, row: Any, index: int, epoch: int) -> Any:
        """The augmented row ``index`` sees in ``epoch``, or None when it is seen as written this time."""
        rng = random.Random(f"{self.seed}/{epoch}/{index}")  # str seeds hash with SHA-512: stable across runs
        if rng.random() >= self.settings.probability:
            return None
        if hasattr(row, "entities"):  # a tagged sentence: entities kept, tags realigned
            return self.augmenter.augment_tagged(row, rng)
        text = self.augmenter.augment(row.text, rng)
        return None if text == row.text else replace(row, text=text)

    def report(self, context: TaskContext, model, evaluation: dict) -> tuple[dict, dict[str, str]]:
        share = self.changed / max(self.seen, 1)
        extras = {"augmentation": {"settings": vars(self.settings), "items_seen": self.seen,
                                   "items_augmented": self.changed, "seconds": round(self.seconds, 2)}}
        lines = [f"EDA-style augmentation ({_describe(self.settings)}), drawn per example and epoch from seed "
                 f"{self.seed}: {self.changed:,} of {self.seen:,} training items seen were augmented ({share:.0%}); "
                 f"augmenting and re-encoding took {self.seconds:.1f} s.", "",
                 "What the model saw (first epoch):", "", "| written | augmented |", "|---|---|"]
        lines += [f"| {_cell(before)} | {_cell(after)} |" for before, after in self.examples(context)]
        return extras, {"Augmentation": "\n".join(lines)}

    def examples(self, context: TaskContext) -> list[tuple[str, str]]:
        """A few training rows beside the variant the first epoch gave them."""
        rows = context.splits.train if context.splits is not None else []
        shown = []
        for index, row in enumerate(rows):
            variant = self.variant(row, index, 0)
            if variant is not None:
                shown.append((row.text, variant.text))
            if len(shown) == _SHOWN_EXAMPLES:
                break
        return shown

    def state_dict(self) -> dict:
        return {"seen": self.seen, "changed": self.changed, "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.seen, self.changed, self.seconds = state["seen"], state["changed"], state["seconds"]


def _describe(settings) -> str:
    rates = [f"{name} {getattr(settings, name):g}" for name in ("synonym", "insert", "swap", "delete", "char_noise")
             if getattr(settings, name) > 0]
    return ", ".join(rates) + f"; probability {settings.probability:g}"


def _cell(text: str) -> str:
    text = text if len(text) <= 160 else text[:157] + "..."
    return text.replace("|", "\\|").replace("\n", " ")
