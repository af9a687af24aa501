"""Tagging whole documents: windows in, one tag and score per word out, stitched across windows.

Shared by validation during training, the final evaluation, ``tuneforge.load(run).predict``, ``eval`` and the
server, so every path tags a document the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from accelerate import PartialState
from accelerate.utils import gather_object

from tuneforge.data.text import SeededBatches
from tuneforge.engine.sharding import my_share
from tuneforge.tasks.token_classification.encoding import (
    Window,
    WindowCollator,
    WordTokenizer,
    best_window_per_word,
    windows_of,
)


@dataclass
class Tagging:
    """What the tagger needs to read documents: its tokenizer, tag names and window settings."""

    words: WordTokenizer
    tags: list[str]
    max_length: int
    stride: int

    def windows(self, documents: Sequence[tuple[str, Sequence[tuple[int, int]]]],
                tags: Sequence[list[str]] | None = None) -> list[list[Window]]:
        """Each document's windows; with ``tags`` (one BIO tag per word), the windows carry tag ids."""
        self.words.warm(documents)
        index = {tag: i for i, tag in enumerate(self.tags)}
        return [windows_of(item, self.words.word_ids(text, words),
                           [index[t] for t in tags[item]] if tags is not None else None,
                           self.words, self.max_length, self.stride)
                for item, (text, words) in enumerate(documents)]


@torch.no_grad()
def tag_windows(tagger, per_document: list[list[Window]], pad_id: int, batch_size: int,
                with_loss: bool = False) -> tuple[list[list[str]], list[list[float]], float | None]:
    """Tags and tag probabilities per word of every document, and the mean loss when windows carry tags.

    Under N processes each scores every N-th window and the pieces are gathered, as for text classification.
    """
    was_training = tagger.training
    tagger.eval()
    flat = [window for windows in per_document for window in windows]
    mine = my_share(len(flat))
    batches = SeededBatches([len(flat[i].input_ids) for i in mine], batch_size, mode="sorted")
    collate, device = WindowCollator(pad_id), tagger.device
    rows, results, losses = [], [], []
    for positions in batches:
        indices = [mine[p] for p in positions]
        batch = {k: v.to(device) for k, v in collate([_item(flat[i]) for i in indices]).items()}
        emissions = tagger(batch)
        if with_loss:
            losses.append((tagger.loss_from(emissions, batch).item(), len(indices)))
        paths, scores = tagger.decode(emissions, batch["word_mask"])
        rows += indices
        results += list(zip(paths, scores, strict=True))
    tagger.train(was_training)
    return *_stitch(per_document, _gather(rows, results, len(flat)), tagger.tag_names), _mean(losses)


def _item(window: Window) -> dict:
    return {"input_ids": window.input_ids, "word_positions": window.word_positions, "word_tags": window.word_tags,
            "index": 0}


def _gather(rows: list[int], results: list, total: int) -> list:
    """Every process's (window index, result) pieces, in window order."""
    pieces = [(rows, results)]
    if PartialState().num_processes > 1:
        pieces = gather_object(pieces)
    ordered: list = [None] * total
    for piece_rows, piece_results in pieces:
        for row, result in zip(piece_rows, piece_results, strict=True):
            ordered[row] = result
    return ordered


def _stitch(per_document: list[list[Window]], results: list, tag_names: list[str]):
    """Each word's tag from its best window (``best_window_per_word``)."""
    tags, scores, start = [], [], 0
    for windows in per_document:
        words = windows[-1].first_word + len(windows[-1].word_positions)
        doc_tags, doc_scores = [], []
        for w, position in best_window_per_word(windows, words):
            path, path_scores = results[start + w]
            doc_tags.append(tag_names[path[position]])
            doc_scores.append(path_scores[position])
        tags.append(doc_tags)
        scores.append(doc_scores)
        start += len(windows)
    return tags, scores


def _mean(losses: list[tuple[float, int]]) -> float | None:
    if not losses:
        return None
    return sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
