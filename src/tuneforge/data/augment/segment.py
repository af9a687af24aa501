"""Text as tokens that augmentation can change, move or drop, and back to text.

A :class:`Sentence` is the text cut into tokens, each keeping the whitespace written before it (its ``gap``), so
joining the tokens gives back the text exactly, and after a change only the changed places lose their original
spacing. English is cut into words (letters and digits, with inner ``'`` and ``-``) and single punctuation
marks; Chinese into jieba's words. An entity of a tagged text is one token that nothing may change, move or split.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from tuneforge.data.tagging import Entity

LANGUAGES: tuple[str, ...] = ("auto", "en", "zh")
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
# a run of whitespace, a word (letters and digits, with inner ' or -: don't, well-known), or any other character
_ENGLISH_TOKEN = re.compile(r"\s+|[^\W_]+(?:['\u2019-][^\W_]+)*|\S")
_SPACE = re.compile(r"(\s+)")
_jieba = None
_jieba_lock = threading.Lock()


@dataclass(slots=True)
class Token:
    """One token: its text, the whitespace before it, and whether it is a word or an entity."""

    text: str
    gap: str = ""  # whitespace written before the token
    word: bool = True  # letters or digits (False: punctuation, symbols)
    entity: str | None = None  # the entity type: an entity is never changed, moved or split

    @property
    def free(self) -> bool:
        """A word augmentation may change, move or drop."""
        return self.word and self.entity is None


@dataclass
class Sentence:
    """A text as tokens; ``tail`` is the whitespace after the last one."""

    tokens: list[Token]
    language: str  # "en" or "zh"
    tail: str = ""
    changed: bool = False  # set by an operation that changed something

    def free_indices(self) -> list[int]:
        """Positions of the words augmentation may touch, in order."""
        return [index for index, token in enumerate(self.tokens) if token.free]

    def join(self) -> tuple[str, tuple[Entity, ...]]:
        """The text and the entities where they now are."""
        parts: list[str] = []
        entities: list[Entity] = []
        position = 0
        for token in self.tokens:
            parts.append(token.gap)
            position += len(token.gap)
            if token.entity is not None:
                entities.append(Entity(position, position + len(token.text), token.entity))
            parts.append(token.text)
            position += len(token.text)
        parts.append(self.tail)
        return "".join(parts), tuple(entities)


def language_of(text: str, language: str) -> str:
    """``"zh"`` or ``"en"``: ``language`` itself, or for ``"auto"`` whether the text holds Chinese characters."""
    if language != "auto":
        return language
    return "zh" if _HAN.search(text) else "en"


def sentence_of(text: str, language: str, entities: Iterable[Entity] = ()) -> Sentence:
    """Cut ``text`` into tokens; every entity becomes one token of its own, and no token crosses an entity's edge.

    Args:
        text: The text.
        language: ``"en"`` or ``"zh"`` (already resolved).
        entities: Sorted, non-overlapping entities of the text (none for plain text).

    Returns:
        A :class:`Sentence` whose :meth:`Sentence.join` gives back ``text`` (and the entities) exactly.
    """
    tokens: list[Token] = []
    gap, position = "", 0
    for entity in entities:
        gap = _add_pieces(tokens, text[position : entity.start], language, gap)
        tokens.append(Token(text[entity.start : entity.end], gap, True, entity.type))
        gap, position = "", entity.end
    gap = _add_pieces(tokens, text[position:], language, gap)
    return Sentence(tokens, language, gap)


def _add_pieces(tokens: list[Token], piece: str, language: str, gap: str) -> str:
    """Append the tokens of ``piece`` (text between entities); returns the whitespace left over at its end."""
    for text, space, word in _pieces(piece, language):
        if text:
            tokens.append(Token(text, gap + space, word))
            gap = ""
        else:
            gap += space
    return gap


@functools.lru_cache(maxsize=1 << 16)
def _pieces(piece: str, language: str) -> tuple[tuple[str, str, bool], ...]:
    """(token, whitespace before it, is a word) for each token of ``piece``; a last entry with an empty token holds
    trailing whitespace. Cached: the same training texts come back every epoch, and jieba is the slow part."""
    out: list[tuple[str, str, bool]] = []
    gap = ""
    raw = _ENGLISH_TOKEN.findall(piece) if language == "en" else jieba_tokenizer().cut(piece)
    for chunk in raw:
        for token in _SPACE.split(chunk):  # jieba gives spaces as tokens of their own; regex matches hold none
            if not token:
                continue
            if token.isspace():
                gap += token
                continue
            out.append((token, gap, _is_word(token)))
            gap = ""
    if gap:
        out.append(("", gap, False))
    return tuple(out)


def _is_word(token: str) -> bool:
    return any(char.isalnum() for char in token)


def jieba_tokenizer():
    """jieba's segmenter, started on first use (its dictionary takes about a second to load) with its console
    messages silenced; a tokenizer of our own, so users' jieba dictionaries and settings stay theirs."""
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                tokenizer = jieba.Tokenizer()
                tokenizer.initialize()
                _jieba = tokenizer
    return _jieba
