"""Words to model inputs: sub-word tokens aligned by character offsets, long documents cut into windows.

Each word is tokenized with the text before it (the space a SentencePiece model reads as part of the word;
BERT's tokenizer drops it), so no sub-word token ever spans two words, and an entity boundary, always on a
word edge, never falls inside a token. Chinese is split into characters before this (``data.tagging``), so
a Chinese word piece never crosses an entity boundary either. Pieces repeat (every ``的``), so each distinct
piece is tokenized once.

A document longer than ``data.max_length`` tokens becomes overlapping windows of whole words, ``stride``
tokens shared between neighbours; on prediction each word takes its tags from the window where it sits
furthest from an edge (the most context on both sides).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

IGNORED = -100


@dataclass
class Window:
    """One model input: a span of one document's words and their token ids."""

    item: int  # index of the document
    first_word: int  # the document's word index of the window's first word
    input_ids: list[int]
    word_positions: list[int]  # per word of the window: the position of its first token in input_ids
    word_tags: list[int] | None = None  # per word: the tag id (training and evaluation data)


class WordTokenizer:
    """Token ids of each word (with the text before it) and the model's special tokens around a window."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[str, list[int]] = {}
        self.prefix, self.suffix = _special_tokens(tokenizer)
        self.fallback = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.pad_token_id

    def word_ids(self, text: str, words: Sequence[tuple[int, int]]) -> list[list[int]]:
        pieces = _pieces(text, words)
        self._tokenize(set(pieces))
        return [self.cache[p] for p in pieces]

    def warm(self, texts_and_words: Sequence[tuple[str, Sequence[tuple[int, int]]]]) -> None:
        """Tokenize every distinct piece of a dataset in one batch call (far faster than one call per text)."""
        self._tokenize({p for text, words in texts_and_words for p in _pieces(text, words)})

    def _tokenize(self, pieces: set[str]) -> None:
        new = sorted(pieces - self.cache.keys())
        if new:
            encoded = self.tokenizer(new, add_special_tokens=False)["input_ids"]
            # a piece the tokenizer drops entirely (a control character) still needs a position for its tag
            self.cache.update((p, ids or [self.fallback]) for p, ids in zip(new, encoded, strict=True))


def _pieces(text: str, words: Sequence[tuple[int, int]]) -> list[str]:
    """Each word with the text between it and the previous word (a leading space is part of a SentencePiece word)."""
    return [text[(words[i - 1][1] if i else 0):end] for i, (_, end) in enumerate(words)]


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text ([CLS] ... [SEP]; <bos> ...)."""
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    return [], []


def windows_of(item: int, word_ids: list[list[int]], tags: list[int] | None, words_tokenizer: WordTokenizer,
               max_length: int, stride: int) -> list[Window]:
    """One window, or overlapping windows of whole words when the document is longer than ``max_length``."""
    room = max_length - len(words_tokenizer.prefix) - len(words_tokenizer.suffix)
    lengths = [min(len(ids), room) for ids in word_ids]  # a single word longer than a window is cut
    windows, start = [], 0
    while True:
        end, used = start, 0
        while end < len(word_ids) and used + lengths[end] <= room:
            used += lengths[end]
            end += 1
        end = max(end, start + 1)
        windows.append(_window(item, start, end, word_ids, lengths, tags, words_tokenizer))
        if end >= len(word_ids):
            return windows
        start = _next_start(start, end, lengths, stride)


def _next_start(start: int, end: int, lengths: list[int], stride: int) -> int:
    """The first word of the next window: ``stride`` tokens back from the end, always moving forward."""
    back, shared = end, 0
    while back - 1 > start and shared + lengths[back - 1] <= stride:
        back -= 1
        shared += lengths[back]
    return back


def _window(item: int, start: int, end: int, word_ids: list[list[int]], lengths: list[int],
            tags: list[int] | None, words_tokenizer: WordTokenizer) -> Window:
    ids, positions = list(words_tokenizer.prefix), []
    for index in range(start, end):
        positions.append(len(ids))
        ids += word_ids[index][: lengths[index]]
    ids += words_tokenizer.suffix
    return Window(item, start, ids, positions, tags[start:end] if tags is not None else None)


def best_window_per_word(windows: list[Window], word_count: int) -> list[tuple[int, int]]:
    """For each word of one document: (window index, position in that window) with the most context."""
    best: list[tuple[int, int, int]] = [(-1, -1, -1)] * word_count  # (margin, window, position)
    for w, window in enumerate(windows):
        size = len(window.word_positions)
        for position in range(size):
            word = window.first_word + position
            margin = min(position, size - 1 - position)
            if margin > best[word][0]:
                best[word] = (margin, w, position)
    return [(w, p) for _, w, p in best]


class WindowDataset(Dataset):
    """Windows as training items; ``lengths()`` for length-grouped batches."""

    def __init__(self, windows: list[Window]) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        window = self.windows[index]
        return {"input_ids": window.input_ids, "word_positions": window.word_positions,
                "word_tags": window.word_tags, "index": index}

    def lengths(self) -> list[int]:
        return [len(w.input_ids) for w in self.windows]


class WindowCollator:
    """Pads a batch: token ids and mask (B, T); word positions, tags and mask (B, W)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(i["input_ids"]) for i in items)
        words = max(len(i["word_positions"]) for i in items)
        ids = torch.full((len(items), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        positions = torch.zeros((len(items), words), dtype=torch.long)
        tags = torch.full((len(items), words), IGNORED, dtype=torch.long)
        word_mask = torch.zeros((len(items), words), dtype=torch.bool)
        for row, item in enumerate(items):
            n, w = len(item["input_ids"]), len(item["word_positions"])
            ids[row, :n] = torch.tensor(item["input_ids"])
            mask[row, :n] = 1
            positions[row, :w] = torch.tensor(item["word_positions"])
            word_mask[row, :w] = True
            if item["word_tags"] is not None:
                tags[row, :w] = torch.tensor(item["word_tags"])
        return {"input_ids": ids, "attention_mask": mask, "word_positions": positions, "word_tags": tags,
                "word_mask": word_mask, "index": torch.tensor([i["index"] for i in items])}
