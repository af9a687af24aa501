"""Language-model data: documents in, fixed-length token blocks out; masking for masked LM.

Documents come from a built-in dataset, a ``.txt`` file, a folder of them, or a text column of a
CSV/JSONL/Parquet/Excel file, validated like every other source (an empty document is reported by file and
line). Text files are decoded by the policy of :mod:`tuneforge.data.encodings` (``data.encoding``, a
byte-order mark, UTF-8, or detected); a file that does not decode stops the read with one message.
Documents are tokenized once, joined with a separator token and cut into blocks of ``data.max_length``
tokens, so no compute is spent on padding.

Held-out text must be text the model has not trained on: with enough documents, whole documents go
to validation and test; with too few (one big ``.txt``), the blocks are split instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tuneforge.config import DataConfig, LMConfig
from tuneforge.data.formats import read_text_file
from tuneforge.data.readers import Example, Problem, read_examples
from tuneforge.data.splits import resolve_files
from tuneforge.data.text import PadCollator, TokenizedTexts
from tuneforge.data.validation import count_bad_rows, format_problems, summarize_skipped
from tuneforge.errors import DataError

SPLITS = ("train", "validation", "test")


@dataclass
class Documents:
    """Validated documents per split; ``split_blocks`` when held-out text is carved from blocks instead."""

    train: list[Example]
    validation: list[Example]
    test: list[Example]
    sources: dict[str, str]
    split_blocks: bool = False
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_rows: int = 0
    total_rows: int = 0


def load_documents(data: DataConfig, seed: int) -> Documents:
    """Read and validate the text a language-model config points at, then split it.

    Raises:
        DataError: listing bad documents/rows (unless ``data.on_bad_rows: skip``), or no text at all.
    """
    files = resolve_files(data)
    read = {split: _read_source(path, data) for split, path in files.items()}
    problems = [p for examples, found in read.values() for p in found]
    total = sum(len(examples) for examples, _ in read.values()) + count_bad_rows(problems)
    if problems and data.on_bad_rows == "error":
        raise DataError(format_problems(problems, total))
    parts = {split: examples for split, (examples, _) in read.items()}
    builtin = None if data.train_file else f"{data.dataset} (built-in)"
    sources = {split: builtin or str(path) for split, path in files.items()}
    documents = _split(parts, data.split, seed, sources)
    documents.skipped, documents.skipped_rows = summarize_skipped(problems), count_bad_rows(problems)
    documents.total_rows = total
    if not documents.train:
        raise DataError(f"no usable text in {sources['train']}")
    return documents


def _read_source(path: Path, data: DataConfig) -> tuple[list[Example], list[Problem]]:
    """Documents of one source: a folder of .txt files, one .txt file, or a text column of a table."""
    if data.sheet is not None and (path.is_dir() or path.suffix.lower() in (".txt", ".text", ".md")):
        raise DataError(f"{path}: data.sheet picks a sheet of an Excel workbook, but this is text; remove it")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"{path}: the folder holds no .txt files")
        found = [_read_txt(p, data.encoding) for p in files]
        return [e for e, _ in found if e], [p for _, p in found if p]
    if path.suffix.lower() in (".txt", ".text", ".md"):
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        example, problem = _read_txt(path, data.encoding)
        return ([example] if example else []), ([problem] if problem else [])
    column, fmt, encoding, sheet = data.text_column, data.format, data.encoding, data.sheet
    if not data.train_file:
        from tuneforge.assets import DATASETS

        column, fmt, encoding, sheet = DATASETS.get(data.dataset).text_column, "jsonl", None, None
    result = read_examples(path, column, None, fmt=fmt, encoding=encoding, sheet=sheet)
    return result.examples, result.problems


def _read_txt(path: Path, encoding: str | None) -> tuple[Example | None, Problem | None]:
    text = read_text_file(path, encoding).text  # bytes that do not decode stop the read: no mojibake
    if not text.strip():
        return None, Problem(str(path), "line 1", "empty_text", "the file holds no text")
    return Example(text.replace("\r\n", "\n"), "", str(path)), None


def _split(parts: dict[str, list[Example]], fractions: list[float], seed: int,
           sources: dict[str, str]) -> Documents:
    """Given splits are kept; missing ones come from train, by document when there are enough."""
    train = parts["train"]
    wanted = [s for s in ("validation", "test") if s not in parts and fractions[SPLITS.index(s)] > 0]
    for split in ("validation", "test"):
        sources.setdefault(split, f"seeded split of {sources['train']}")
    if not wanted:
        return Documents(train, parts.get("validation", []), parts.get("test", []), sources)
    shares = {s: fractions[SPLITS.index(s)] / (fractions[0] + sum(fractions[SPLITS.index(w)] for w in wanted))
              for s in wanted}
    if any(round(len(train) * share) < 1 for share in shares.values()) or len(train) - len(wanted) < 1:
        # too few documents to hold whole ones out: split_blocks tells the task to split blocks
        for split in wanted:
            sources[split] = f"seeded block split of {sources['train']}"
        return Documents(train, parts.get("validation", []), parts.get("test", []), sources, split_blocks=True)
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    held: dict[str, list[Example]] = {}
    start = 0
    for split in wanted:
        count = round(len(train) * shares[split])
        held[split] = [train[i] for i in sorted(order[start : start + count])]
        start += count
    rest = [train[i] for i in sorted(order[start:])]
    return Documents(rest, parts.get("validation", held.get("validation", [])),
                     parts.get("test", held.get("test", [])), sources)


# --------------------------------------------------------------------------- packing


class TokenBlocks(TokenizedTexts):
    """Packed blocks of token ids; for masked LM also which tokens start a word (whole-word masking)."""

    def __init__(self, input_ids: list[list[int]], word_starts: list[list[bool]] | None = None) -> None:
        super().__init__(input_ids, None)
        self.word_starts = word_starts

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        if self.word_starts is not None:
            item["word_starts"] = self.word_starts[index]
        return item

    def subset(self, indices: list[int]) -> TokenBlocks:
        starts = [self.word_starts[i] for i in indices] if self.word_starts is not None else None
        return TokenBlocks([self.input_ids[i] for i in indices], starts)

    def num_tokens(self) -> int:
        return sum(len(ids) for ids in self.input_ids)


def pack_causal(texts: list[str], tokenizer, block_size: int) -> TokenBlocks:
    """Documents joined by the end-of-sequence token, cut into ``block_size`` blocks (the tail kept short)."""
    separator = tokenizer.eos_token_id
    if separator is None:
        raise DataError("the tokenizer has no end-of-sequence token to separate documents with")
    stream: list[int] = []
    for ids in _token_ids(texts, tokenizer):
        stream += ids + [separator]
    return TokenBlocks(_cut(stream, block_size))


def pack_masked(texts: list[str], tokenizer, block_size: int) -> TokenBlocks:
    """Documents joined by [SEP], cut into blocks of ``block_size - 2`` wrapped as ``[CLS] ... [SEP]``."""
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None or tokenizer.mask_token_id is None:
        raise DataError("masked_lm needs an encoder tokenizer with [CLS], [SEP] and [MASK] tokens (e.g. minilm-l6)")
    stream: list[int] = []
    starts: list[bool] = []
    encoded = tokenizer(texts, add_special_tokens=False, truncation=False)
    for row in range(len(texts)):
        ids = encoded["input_ids"][row]
        words = encoded.word_ids(row) if tokenizer.is_fast else list(range(len(ids)))
        stream += ids + [sep_id]
        starts += [i == 0 or words[i] != words[i - 1] for i in range(len(ids))] + [False]
    width = block_size - 2
    blocks = [[cls_id, *chunk, sep_id] for chunk in _cut(stream, width)]
    flags = [[False, *chunk, False] for chunk in _cut(starts, width)]
    return TokenBlocks(blocks, flags)


def _token_ids(texts: list[str], tokenizer) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]


def _cut(stream: list, size: int) -> list[list]:
    return [stream[i : i + size] for i in range(0, len(stream), size) if len(stream[i : i + size]) > 1]


def split_blocks(blocks: TokenBlocks, fractions: list[float], seed: int) -> tuple[TokenBlocks, ...]:
    """A seeded train/validation/test split of blocks, for text with too few documents to split."""
    order = list(range(len(blocks)))
    random.Random(seed).shuffle(order)
    n_val, n_test = (max(1, round(len(order) * f)) if f > 0 else 0 for f in fractions[1:])
    if len(order) - n_val - n_test < 1:
        raise DataError(f"only {len(order)} blocks of text: too little to hold out validation and test blocks; "
                        "add text, lower data.max_length or give data.validation_file")
    cuts = (order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test])
    return tuple(blocks.subset(sorted(part)) for part in cuts)


def evenly_spaced(blocks: TokenBlocks, limit: int | None) -> TokenBlocks:
    """At most ``limit`` blocks spread over the whole split (not just its first document)."""
    if limit is None or len(blocks) <= limit:
        return blocks
    step = len(blocks) / limit
    return blocks.subset([int(i * step) for i in range(limit)])


# --------------------------------------------------------------------------- collators


class CausalCollator(PadCollator):
    """Pads blocks; labels are the inputs, -100 on padding (the shift happens in the loss)."""

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        batch = super().__call__(items)
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        return batch


class MaskingCollator(PadCollator):
    """BERT-style masking: pick ``mlm_probability`` of the tokens (or of the words), then 80/10/10.

    Of the picked tokens, ``mask_replace_prob`` become [MASK], ``random_replace_prob`` a random token,
    the rest stay; only picked tokens carry labels. Special tokens and padding are never picked.
    Training draws from torch's global RNG (checkpoints save and restore it). With ``fixed_seed``
    each block's masks depend only on the seed and the block's index, so held-out loss before and
    after training (and on any number of processes) is measured on the same masks.
    """

    def __init__(self, tokenizer, lm: LMConfig, fixed_seed: int | None = None) -> None:
        super().__init__(tokenizer.pad_token_id or 0)
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        self.lm = lm
        self.fixed_seed = fixed_seed

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        batch = super().__call__(items)
        ids = batch["input_ids"]
        maskable = (batch["attention_mask"] == 1) & ~torch.isin(ids, self.special)
        if self.fixed_seed is None:
            masked, labels = self._mask(ids, maskable, items, None)
        else:
            rows = [self._mask(ids[r : r + 1], maskable[r : r + 1], items[r : r + 1],
                               torch.Generator().manual_seed(self.fixed_seed * 1_000_003 + item["index"]))
                    for r, item in enumerate(items)]
            masked, labels = torch.cat([m for m, _ in rows]), torch.cat([lab for _, lab in rows])
        batch["input_ids"], batch["labels"] = masked, labels
        return batch

    def _mask(self, ids: torch.Tensor, maskable: torch.Tensor, items: list[dict],
              generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        picked = self._pick(items, maskable, ids.shape, generator)
        draw = torch.rand(ids.shape, generator=generator)
        to_mask = picked & (draw < self.lm.mask_replace_prob)
        to_random = picked & ~to_mask & (draw < self.lm.mask_replace_prob + self.lm.random_replace_prob)
        random_ids = torch.randint(self.vocab_size, ids.shape, generator=generator)
        masked = torch.where(to_random, random_ids, ids.masked_fill(to_mask, self.mask_id))
        return masked, ids.masked_fill(~picked, -100)

    def _pick(self, items: list[dict], maskable: torch.Tensor, shape: torch.Size,
              generator: torch.Generator | None) -> torch.Tensor:
        if not self.lm.whole_word_mask:
            return maskable & (torch.rand(shape, generator=generator) < self.lm.mlm_probability)
        # whole words: a word is picked as a unit, every one of its sub-word tokens with it
        starts = torch.zeros(shape, dtype=torch.long)
        for row, item in enumerate(items):
            starts[row, : len(item["word_starts"])] = torch.tensor(item["word_starts"], dtype=torch.long)
        word_index = starts.cumsum(dim=1)  # tokens of one word share an index
        chosen = torch.rand(shape[0], shape[1] + 1, generator=generator) < self.lm.mlm_probability
        return maskable & torch.gather(chosen, 1, word_index)
