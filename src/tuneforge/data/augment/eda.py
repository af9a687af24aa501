"""EDA's four operations (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for Boosting Performance on
Text Classification Tasks") on a :class:`~tuneforge.data.augment.segment.Sentence`.

Only free words (not punctuation, not entities) are replaced, inserted next to, swapped or deleted; an entity is
one token, so it is never changed or split, only carried along. Each operation changes the sentence in place
and sets ``sentence.changed`` when it did something.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tuneforge.data.augment.segment import Sentence, Token

# word -> its synonyms (empty when it has none or must not be replaced)
SynonymsOf = Callable[[str], list[str]]


def changes(rate: float, words: int) -> int:
    """EDA's number of changes: ``max(1, round(rate * words))`` when ``rate > 0`` and there are words, else 0."""
    return max(1, round(rate * words)) if rate > 0 and words else 0


def replace_synonyms(sentence: Sentence, rate: float, rng: random.Random, synonyms_of: SynonymsOf) -> None:
    """Replace ``changes(rate, words)`` distinct free words that have synonyms, each by one of them."""
    free = sentence.free_indices()
    candidates = [index for index in free if synonyms_of(sentence.tokens[index].text)]
    rng.shuffle(candidates)
    for index in candidates[: changes(rate, len(free))]:
        token = sentence.tokens[index]
        token.text = match_case(rng.choice(synonyms_of(token.text)), token.text)
        sentence.changed = True


def insert_synonyms(sentence: Sentence, rate: float, rng: random.Random, synonyms_of: SynonymsOf) -> None:
    """Insert ``changes(rate, words)`` times a synonym of a random free word, before a random word (entities
    included) or after the last one: never in front of punctuation, so a sentence still ends with its full stop."""
    free = sentence.free_indices()
    sources = [sentence.tokens[index].text for index in free if synonyms_of(sentence.tokens[index].text)]
    if not sources:
        return
    space = " " if sentence.language == "en" else ""
    for _ in range(changes(rate, len(free))):
        synonym = rng.choice(synonyms_of(rng.choice(sources)))
        places = [index for index, token in enumerate(sentence.tokens) if token.word]
        places.append(places[-1] + 1)
        insert_token(sentence, rng.choice(places), Token(synonym, space))
        sentence.changed = True


def insert_token(sentence: Sentence, position: int, token: Token) -> None:
    """Put ``token`` (whose gap is the spacing it wants before it) at ``position`` of the tokens."""
    tokens = sentence.tokens
    if position == 0 and tokens:
        # the new first token takes over the text's leading whitespace; the old first one gets the new spacing
        token.gap, tokens[0].gap = tokens[0].gap, token.gap
    tokens.insert(position, token)


def swap_words(sentence: Sentence, rate: float, rng: random.Random) -> None:
    """Swap two distinct free words, ``changes(rate, words)`` times (spacing stays where it was)."""
    free = sentence.free_indices()
    if len(free) < 2:
        return
    for _ in range(changes(rate, len(free))):
        first, second = rng.sample(free, 2)
        tokens = sentence.tokens
        if tokens[first].text != tokens[second].text:
            tokens[first].text, tokens[second].text = tokens[second].text, tokens[first].text
            sentence.changed = True


def delete_words(sentence: Sentence, rate: float, rng: random.Random) -> None:
    """Delete each free word with probability ``rate``; one stays when all words (entities included) would go."""
    if rate <= 0:
        return
    free = sentence.free_indices()
    doomed = [index for index in free if rng.random() < rate]
    others = sum(token.word for token in sentence.tokens) - len(free)  # entities are words that always stay
    if doomed and len(doomed) == len(free) and not others:
        doomed.remove(rng.choice(doomed))
    for index in reversed(doomed):
        delete_token(sentence, index)
        sentence.changed = True


def delete_token(sentence: Sentence, index: int) -> None:
    """Remove a token; its spacing goes with it unless the next token would otherwise be glued to what came
    before (the first token's leading whitespace, a word written right after the deleted one)."""
    tokens = sentence.tokens
    gone = tokens.pop(index)
    if index < len(tokens) and (index == 0 or (tokens[index].word and not tokens[index].gap)):
        tokens[index].gap = gone.gap


def match_case(replacement: str, original: str) -> str:
    """``replacement`` written in the case of ``original`` (``Happy`` -> ``Glad``, ``HAPPY`` -> ``GLAD``)."""
    if len(original) > 1 and original.isupper():
        return replacement.upper()
    if original[:1].isupper() and replacement[:1].islower():
        return replacement[:1].upper() + replacement[1:]
    return replacement
