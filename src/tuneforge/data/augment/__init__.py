"""Text augmentation for when labels are few, and perturbed copies of test sets to measure robustness.

:class:`TextAugmenter` makes EDA-style variants (Wei & Zou 2019: synonym replacement, random insertion, random
swap, random deletion) plus character noise, for English (WordNet synonyms) and Chinese (jieba words, 同义词词林
synonyms, same-sound characters); :func:`perturb` makes one kind of damage at a known rate. Both have a tagged
form for named entities that leaves every entity exactly as written and moves its offsets.

Everything is drawn from the ``random.Random`` given, so the same seed gives the same text. The synonym tables are
the built-in ``wordnet`` and ``cilin`` assets (``tuneforge prepare wordnet cilin``), read once per process.
"""

from __future__ import annotations

import random

from tuneforge.data.augment import eda, noise
from tuneforge.data.augment.lexicons import (
    CHINESE_STOP_WORDS,
    ENGLISH_STOP_WORDS,
    chinese_synonyms,
    english_synonyms,
    similar_chars,
)
from tuneforge.data.augment.segment import LANGUAGES, Sentence, language_of, sentence_of
from tuneforge.data.tagging import TaggedText, words_for
from tuneforge.errors import ConfigError

PERTURBATIONS: tuple[str, ...] = ("typos", "synonyms")
OPERATIONS: tuple[str, ...] = ("synonym", "insert", "swap", "delete", "char_noise")

__all__ = ["OPERATIONS", "PERTURBATIONS", "TextAugmenter", "perturb", "perturb_tagged"]


class TextAugmenter:
    """EDA-style variants of English and Chinese text; each call applies one of the operations whose rate is
    above 0, picked at random (as EDA does: every augmented sentence comes from one operation).

    Args:
        synonym: Replace ``max(1, round(synonym * words))`` words by a synonym (stop words never).
        insert: Insert a synonym of a random word at a random place, ``max(1, round(insert * words))`` times.
        swap: Swap two random words, ``max(1, round(swap * words))`` times.
        delete: Delete each word with this probability (never every word).
        char_noise: Change this share of the characters: English keyboard typos (a neighbouring key substituted
            or inserted, a letter deleted, two swapped); Chinese a same-sound or equivalent character.
        language: ``"en"``, ``"zh"``, or ``"auto"``: per text, Chinese when it holds Chinese characters.

    Words are the text's words outside entities, punctuation not counted. The tables an enabled operation needs
    are loaded here, so a missing one is an error before training starts.

    Raises:
        ConfigError: A rate outside [0, 1] or an unknown language.
        DataError: A lexicon that is not prepared and cannot be fetched (says which ``tuneforge prepare`` to run).
    """

    def __init__(self, synonym: float = 0.0, insert: float = 0.0, swap: float = 0.0, delete: float = 0.0,
                 char_noise: float = 0.0, language: str = "auto") -> None:
        self.rates = {"synonym": synonym, "insert": insert, "swap": swap, "delete": delete, "char_noise": char_noise}
        for name, rate in self.rates.items():
            _check_rate(name, rate)
        self.language = _check_language(language)
        self.operations = tuple(name for name in OPERATIONS if self.rates[name] > 0)
        _load_tables(self.operations, language)

    def __repr__(self) -> str:
        rates = ", ".join(f"{name}={rate:g}" for name, rate in self.rates.items() if rate > 0)
        return f"TextAugmenter({rates}{', ' if rates else ''}language={self.language!r})"

    def augment(self, text: str, rng: random.Random) -> str:
        """One augmented variant of ``text``: never empty (unless ``text`` is), spacing kept where nothing changed.

        Args:
            text: Any text.
            rng: The random source; the same state gives the same variant.

        Returns:
            The variant (``text`` itself when no operation is enabled or none could change it).
        """
        if not self.operations or not text.strip():
            return text
        sentence = sentence_of(text, language_of(text, self.language))
        self._apply(sentence, rng)
        return sentence.join()[0] if sentence.changed else text

    def augment_tagged(self, item: TaggedText, rng: random.Random) -> TaggedText:
        """One augmented variant of a tagged sentence: only text outside entities changes.

        Every entity keeps its text and type; swaps, insertions and deletions never touch or split one, and its
        offsets move to where it now is. ``words`` are recomputed (:func:`~tuneforge.data.tagging.words_for`),
        and ``source`` gets `` (augmented)``.

        Args:
            item: A tagged sentence (English words or Chinese characters).
            rng: The random source.

        Returns:
            A new :class:`TaggedText`, or ``item`` itself when nothing changed.
        """
        if not self.operations or not item.text.strip():
            return item
        sentence = sentence_of(item.text, language_of(item.text, self.language), item.entities)
        self._apply(sentence, rng)
        return _tagged(item, sentence, " (augmented)")

    def _apply(self, sentence: Sentence, rng: random.Random) -> None:
        operation = rng.choice(self.operations)
        rate = self.rates[operation]
        if operation == "synonym":
            eda.replace_synonyms(sentence, rate, rng, _synonyms_of(sentence.language))
        elif operation == "insert":
            eda.insert_synonyms(sentence, rate, rng, _synonyms_of(sentence.language))
        elif operation == "swap":
            eda.swap_words(sentence, rate, rng)
        elif operation == "delete":
            eda.delete_words(sentence, rate, rng)
        elif sentence.language == "en":
            noise.english_char_noise(sentence, rate, rng)
        else:
            noise.chinese_char_noise(sentence, rate, rng, similar_chars())


def perturb(text: str, kind: str, rng: random.Random, rate: float = 0.1, language: str = "auto") -> str:
    """A damaged copy of ``text`` for robustness tests.

    Args:
        text: Any text.
        kind: ``"typos"``: one keyboard slip in ``max(1, round(rate * words))`` English words, or ``max(1,
            round(rate * characters))`` Chinese characters replaced by same-sound or equivalent ones;
            ``"synonyms"``: ``max(1, round(rate * words))`` words replaced by a synonym.
        rng: The random source.
        rate: The share of words (English typos, synonyms) or characters (Chinese typos) touched; 0 changes nothing.
        language: ``"en"``, ``"zh"`` or ``"auto"`` (per text).

    Returns:
        The perturbed text (``text`` itself when nothing could be changed).

    Raises:
        ConfigError: An unknown kind (the message lists :data:`PERTURBATIONS`), rate or language.
    """
    _check_perturbation(kind, rate, language)
    if rate == 0 or not text.strip():
        return text
    sentence = sentence_of(text, language_of(text, language))
    _perturb(sentence, kind, rate, rng)
    return sentence.join()[0] if sentence.changed else text


def perturb_tagged(item: TaggedText, kind: str, rng: random.Random, rate: float = 0.1,
                   language: str = "auto") -> TaggedText:
    """:func:`perturb` outside the entities of a tagged sentence; entities kept exactly, offsets and ``words``
    realigned, `` (perturbed: KIND)`` added to ``source``; ``item`` itself when nothing changed."""
    _check_perturbation(kind, rate, language)
    if rate == 0 or not item.text.strip():
        return item
    sentence = sentence_of(item.text, language_of(item.text, language), item.entities)
    _perturb(sentence, kind, rate, rng)
    return _tagged(item, sentence, f" (perturbed: {kind})")


def _perturb(sentence: Sentence, kind: str, rate: float, rng: random.Random) -> None:
    if kind == "synonyms":
        eda.replace_synonyms(sentence, rate, rng, _synonyms_of(sentence.language))
    elif sentence.language == "en":
        noise.english_word_typos(sentence, rate, rng)
    else:
        noise.chinese_char_noise(sentence, rate, rng, similar_chars())


def _tagged(item: TaggedText, sentence: Sentence, suffix: str) -> TaggedText:
    if not sentence.changed:
        return item
    text, entities = sentence.join()
    return TaggedText(text, entities, item.source + suffix, words_for(text, entities))


def _synonyms_of(language: str) -> eda.SynonymsOf:
    """The synonym lookup of a language: stop words (English) and single-character function words (Chinese)
    have none."""
    if language == "en":
        table = english_synonyms()
        return lambda word: [] if word.lower() in ENGLISH_STOP_WORDS else table.get(word.lower(), [])
    table = chinese_synonyms()
    return lambda word: [] if word in CHINESE_STOP_WORDS else table.get(word, [])


def _load_tables(operations: tuple[str, ...], language: str) -> None:
    """Read (or prepare) now every table the enabled operations can need for ``language``."""
    languages = ("en", "zh") if language == "auto" else (language,)
    if {"synonym", "insert"} & set(operations):
        for each in languages:
            _synonyms_of(each)
    if "char_noise" in operations and "zh" in languages:
        similar_chars()


def _check_rate(name: str, rate: float) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ConfigError(f"augmentation rate {name}={rate!r}: use a number from 0 to 1 (0 turns it off)")


def _check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise ConfigError(f"augmentation language {language!r}: use one of: {', '.join(LANGUAGES)}")
    return language


def _check_perturbation(kind: str, rate: float, language: str) -> None:
    if kind not in PERTURBATIONS:
        raise ConfigError(f"unknown perturbation {kind!r}; use one of: {', '.join(PERTURBATIONS)}")
    _check_rate("rate", rate)
    _check_language(language)
