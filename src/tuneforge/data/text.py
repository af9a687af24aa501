"""Tokenized text batches: tokenize once, pad per batch, group by length.

Dynamic padding plus length-grouped batching is most of tuneforge's speed on short texts: a batch of
short sentences no longer pays for the longest sentence in the dataset, nor in a random batch.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler


class TokenizedTexts(Dataset):
    """Token ids of each text (unpadded) and its target: a class id, or a multi-hot row."""

    def __init__(self, input_ids: list[list[int]], targets: torch.Tensor | None) -> None:
        self.input_ids = input_ids
        self.targets = targets

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict:
        item = {"input_ids": self.input_ids[index], "index": index}
        if self.targets is not None:
            item["labels"] = self.targets[index]
        return item

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


def tokenize(texts: Sequence[str], tokenizer, max_length: int) -> list[list[int]]:
    """Token ids with the model's special tokens, truncated to ``max_length``; no padding yet."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    return encoded["input_ids"]


def encode_targets(labels: Sequence[str | list[str]], label_names: list[str], multi_label: bool) -> torch.Tensor:
    """Class ids (long, shape (N,)) or multi-hot rows (float, shape (N, L))."""
    index = {name: i for i, name in enumerate(label_names)}
    if not multi_label:
        return torch.tensor([index[label] for label in labels], dtype=torch.long)
    targets = torch.zeros(len(labels), len(label_names))
    for row, row_labels in enumerate(labels):
        for label in row_labels:
            targets[row, index[label]] = 1.0
    return targets


class PadCollator:
    """Pads a list of items to the longest in the batch: (B, T) ids and attention mask."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(item["input_ids"]) for item in items)
        ids = torch.full((len(items), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, item in enumerate(items):
            ids[row, : len(item["input_ids"])] = torch.tensor(item["input_ids"])
            mask[row, : len(item["input_ids"])] = 1
        batch = {"input_ids": ids, "attention_mask": mask, "index": torch.tensor([i["index"] for i in items])}
        if "labels" in items[0]:
            batch["labels"] = torch.stack([item["labels"] for item in items])
        return batch


class SeededBatches(Sampler[list[int]]):
    """Batches of indices in an order that is a pure function of (seed, epoch); exact resume needs that.

    Modes:
        ``grouped`` (training default): shuffle, cut into mega-batches of ``50 * batch_size``, sort each
        by length, cut into batches, shuffle the batches. Batches stay random in content and order,
        but padding all but disappears.
        ``random``: plain seeded shuffling (``train.group_by_length: false``).
        ``sorted``: fully sorted by length, no randomness (evaluation and prediction).
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0, mode: str = "grouped") -> None:
        if mode not in ("grouped", "random", "sorted"):
            raise ValueError(f"unknown batching mode {mode!r}")
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.mode = mode
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_first(self, batches: int) -> None:
        """The next iteration (only) leaves out the epoch's first ``batches``: resuming mid-epoch, they are
        never built, which for images means never decoded."""
        self.skip = batches

    def _remaining(self, batches: list[list[int]]) -> list[list[int]]:
        skip, self.skip = self.skip, 0
        return batches[skip:]

    def _batches(self) -> list[list[int]]:
        order = list(range(len(self.lengths)))
        if self.mode == "sorted":
            order.sort(key=lambda i: self.lengths[i])
            return self._cut(order)
        rng = random.Random(self.seed * 100_003 + self.epoch)
        rng.shuffle(order)
        if self.mode == "random":
            return self._cut(order)
        mega = 50 * self.batch_size
        batches = []
        for start in range(0, len(order), mega):
            batches += self._cut(sorted(order[start : start + mega], key=lambda i: self.lengths[i]))
        rng.shuffle(batches)
        return batches

    def _cut(self, order: list[int]) -> list[list[int]]:
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._remaining(self._batches()))

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size
