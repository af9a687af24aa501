"""Can the model read this text? A tokenizer-coverage check before any training, and the script of a text.

A model whose vocabulary lacks the text's script trains on nothing: MiniLM turns most Chinese characters into
``[UNK]`` and still reaches a plausible-looking accuracy. Before training, a sample of the training texts is
tokenized and measured; beyond a threshold the run stops, naming the figures, an example and the registered
models that do cover the text (``data.allow_unknown_tokens: true`` trains anyway).
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from tuneforge.errors import DataError

SAMPLE_TEXTS = 300
MAX_UNKNOWN_SHARE = 0.05  # of tokens
MAX_BYTE_SHARE = 0.5  # of tokens that are a fragment of a character (byte-level BPE, SentencePiece byte fallback)


@dataclass(frozen=True)
class Coverage:
    """How a tokenizer sees a sample of texts."""

    unknown_share: float  # tokens that are the tokenizer's unknown token
    byte_share: float  # tokens that hold only part of a character's bytes
    tokens_per_char: float
    example: str  # the sample text that shows the problem best, with its tokens

    @property
    def blind(self) -> bool:
        return self.unknown_share > MAX_UNKNOWN_SHARE or self.byte_share > MAX_BYTE_SHARE

    def describe(self) -> str:
        return (f"{self.unknown_share:.0%} unknown tokens, {self.byte_share:.0%} byte-fragment tokens, "
                f"{self.tokens_per_char:.2f} tokens per character")


def cjk_share(texts: Sequence[str]) -> float:
    """Share of the letters in ``texts`` that are Chinese, Japanese or Korean (Han, kana, hangul)."""
    letters = cjk = 0
    for text in texts:
        for char in text:
            if char.isalpha():
                letters += 1
                cjk += _is_cjk(char)
    return cjk / letters if letters else 0.0


def _is_cjk(char: str) -> bool:
    name = unicodedata.name(char, "")
    return name.startswith(("CJK ", "HIRAGANA", "KATAKANA", "HANGUL"))


def measure(texts: Sequence[str], tokenizer, sample: int = SAMPLE_TEXTS, seed: int = 0) -> Coverage:
    """Coverage of ``tokenizer`` on a seeded sample of ``texts``."""
    chosen = random.Random(seed).sample(list(texts), min(sample, len(texts)))
    # The first 512 characters are plenty to judge a text, and stay under every model's length limit.
    encoded = [tokenizer(text[:512], add_special_tokens=False)["input_ids"] for text in chosen]
    fragments = _fragment_ids(tokenizer, {i for ids in encoded for i in ids})
    unknown_id = tokenizer.unk_token_id
    unknown = sum(i == unknown_id for ids in encoded for i in ids)
    partial = sum(i in fragments for ids in encoded for i in ids)
    tokens = max(sum(map(len, encoded)), 1)

    def badness(pair: tuple[str, list[int]]) -> float:  # the short text that shows the problem best
        text, ids = pair
        bad = sum(i == unknown_id or i in fragments for i in ids)
        return bad / max(len(ids), 1) - (len(text) > 60)

    example, ids = max(zip(chosen, encoded, strict=True), key=badness, default=("", []))
    shown = " ".join(tokenizer.convert_ids_to_tokens(ids[:24])) + (" ..." if len(ids) > 24 else "")
    return Coverage(unknown / tokens, partial / tokens, tokens / max(sum(map(len, chosen)), 1),
                    f"'{example[:60]}' -> {shown}")


def _fragment_ids(tokenizer, ids: set[int]) -> set[int]:
    """Those of ``ids`` whose token decodes to an incomplete character (a byte of a byte-level vocabulary)."""
    tokens = tokenizer.convert_ids_to_tokens(sorted(ids))
    return {i for i, token in zip(sorted(ids), tokens, strict=True)
            if (token.startswith("<0x") and token.endswith(">")) or "\ufffd" in tokenizer.decode([i])}


def check_coverage(texts: Sequence[str], tokenizer, model_name: str, allow: bool) -> Coverage:
    """Raise DataError when ``tokenizer`` cannot represent ``texts`` (unless ``allow``); return the figures.

    The message names the registered text models whose tokenizers do read the text.
    """
    coverage = measure(texts, tokenizer)
    if not coverage.blind or allow:
        return coverage
    readable = {name: c for name, c in registered_coverage(texts).items() if not c.blind and name != model_name}
    suggestion = ("; registered models that read it: " + ", ".join(f"{name} ({c.describe()})"
                                                                   for name, c in readable.items())
                  + f". Set model.name: {next(iter(readable))}") if readable else ""
    raise DataError(
        f"model {model_name} cannot read this text: on {min(len(texts), SAMPLE_TEXTS)} training texts its tokenizer "
        f"gives {coverage.describe()} (e.g. {coverage.example}){suggestion}. "
        "To train anyway set data.allow_unknown_tokens: true"
    )


def registered_coverage(texts: Sequence[str]) -> dict[str, Coverage]:
    """Registered text model -> how its tokenizer covers ``texts`` (models whose weights are not installed are
    left out)."""
    from transformers import AutoTokenizer

    from tuneforge.assets import MODELS, resolve_model
    from tuneforge.errors import RegistryError

    result = {}
    for entry in MODELS:
        if entry.value.kind == "vision":
            continue
        try:
            result[entry.name] = measure(texts, AutoTokenizer.from_pretrained(resolve_model(entry.name)))
        except (RegistryError, OSError):
            continue
    return result
