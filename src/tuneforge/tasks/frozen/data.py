"""Frozen's training and held-out data: image-caption (or question-answer) pairs as interleaved pieces, and the
held-out caption perplexity, shared by the recipe and the evaluation."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from tuneforge.config import Config
from tuneforge.data.captions import ImageText
from tuneforge.data.image_batches import ImageDataset
from tuneforge.data.transforms import Augmentation, Preprocessing
from tuneforge.tasks.frozen.network import SequenceFormat, VisualPrefixLM, collate

BINDING_QUESTION = "Q: What is this? A: This is a"  # as fast binding asks (tasks.frozen.evaluation)
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
