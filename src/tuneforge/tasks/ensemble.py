"""An ensemble of classifier runs, loaded back: the members' probabilities averaged with stored weights.

``tuneforge ensemble`` (``experiments.ensemble``) writes a folder with no weights of its own: a ``tuneforge.json``
with the members' task and labels and an ``ensemble`` entry (member paths, weights, how they were chosen).
``tuneforge.load`` on it gives an :class:`EnsembleClassifier`, which answers like the members' own loaded model
(``predict_proba``, ``predict``, ``meta``, ``labels``, ``source``, ``tokenizer``), so ``predict``, ``eval`` and
``serve`` take it unchanged. Nothing here knows a task by name: each member is loaded by its own task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError, RunError
from tuneforge.runs import read_run
from tuneforge.runs.reader import ENSEMBLE_KEY
from tuneforge.tasks.classification import LabelSpace, Prediction, predictions_from

EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] before a log, as loss_from_probs does


def combine(probabilities: list[np.ndarray], weights: list[float] | np.ndarray) -> np.ndarray:
    """The weighted average of the members' (N, L) probabilities: rows still sum to 1 (single-label) and stay in
    [0, 1] (multi-label), since the weights do."""
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probabilities])  # (M, N, L)
    return np.tensordot(np.asarray(weights, dtype=np.float64), stacked, axes=1).astype(np.float32)


def probabilities_to_logits(probs: np.ndarray, multi_label: bool) -> np.ndarray:
    """Logits that give back ``probs``: log p under a softmax, log-odds under per-label sigmoids."""
    p = np.clip(probs.astype(np.float64), EPSILON, 1 - EPSILON)
    return (np.log(p / (1 - p)) if multi_label else np.log(p)).astype(np.float32)


class EnsembleClassifier:
    """``tuneforge.load(ensemble_dir)``: several trained classifiers of one task and label set, as one."""

    def __init__(self, members: list[Any], weights: list[float], meta: dict, source: Path) -> None:
        self.members = members
        self.weights = [float(w) for w in weights]
        self.meta = meta
        self.source = source  # the ensemble's model folder
        self.labels = LabelSpace(meta["labels"], bool(meta.get("multi_label")))
        # the server counts request tokens with it; image members have none
        self.tokenizer = getattr(members[0], "tokenizer", None)

    @classmethod
    def from_run(cls, path: str | Path) -> EnsembleClassifier:
        """Every member loaded by its own task's loader (an ONNX or int8 export member by the export loaders)."""
        from tuneforge.tasks import TASKS

        opened = read_run(path)  # opens and checks every member: a moved or damaged one is named
        if not opened.is_ensemble:
            raise RunError(f"{path}: not an ensemble folder (its tuneforge.json has no '{ENSEMBLE_KEY}' entry)")
        task = TASKS.get(opened.task)
        members = [task.load(member) for member in opened.members]
        return cls(members, opened.meta[ENSEMBLE_KEY]["weights"], opened.meta, opened.model_dir)

    @property
    def member_dirs(self) -> list[Path]:
        return [Path(member.source) for member in self.members]

    def predict_proba(self, inputs: list, batch_size: int = 64) -> np.ndarray:
        """(N, L) probabilities, columns in ``self.labels.names`` order: the weighted mean of the members'."""
        if not len(inputs):
            return np.zeros((0, len(self.labels.names)), dtype=np.float32)
        return combine([m.predict_proba(inputs, batch_size=batch_size) for m in self.members], self.weights)

    def logits(self, inputs: list, batch_size: int = 64) -> np.ndarray:
        """What a single network's logits would be for the combined probabilities (a distillation target)."""
        return probabilities_to_logits(self.predict_proba(inputs, batch_size), self.labels.multi_label)

    def predict(self, inputs: list, batch_size: int = 64) -> list[Prediction]:
        if not inputs:
            return []
        probs = self.predict_proba(inputs, batch_size)
        return predictions_from(probs, self.labels, self.meta.get("thresholds"))

    def merged(self):
        """An ensemble has no single set of weights to merge, prune, compress or export as one model."""
        run = self.source.parent if self.source.name == "model" else self.source
        raise ConfigError(f"{run}: an ensemble is several models, not one network; export its members with "
                          f"`tuneforge export {run} --format onnx` (or onnx-int8, int8), work on a member run, or "
                          f"distil the ensemble into one model: tuneforge distill {run}")

    def save_merged(self, folder: Path) -> None:
        self.merged()  # refused, as above
