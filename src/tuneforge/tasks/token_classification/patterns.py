"""Rule entities beside the model: regular expressions and dictionaries the user lists under ``ner.patterns``.

Some entities are better stated than learnt: an order number is ``ORD-`` and six digits, a product is one of the
names in the catalogue. Each entry of ``ner.patterns`` is one rule::

    ner:
      patterns:
        - {type: ORDER, regex: 'ORD-\\d{6}'}
        - {type: AMOUNT, regex: '¥\\d+(\\.\\d\\d)?'}
        - {type: PRODUCT, file: products.txt}   # one name per line, beside the config file

A dictionary file is read whole through :func:`tuneforge.data.encodings.decode` (UTF-8, or GB18030/Big5/UTF-16...
detected, or the entry's ``encoding``); blank lines are skipped. Its names become one regular expression shaped
like a trie (``华为(?:Mate 60(?: Pro)?|P60)``), so matching costs about the same for ten names or ten thousand,
and the longest name wins where one name starts another. A name that starts or ends with an ASCII letter, digit or
underscore must not continue a word there (``Mate`` is not found inside ``Mates``); Chinese text has no spaces
between words, so next to CJK characters no boundary is asked for (``买华为手机`` finds ``华为``).
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tuneforge.data.encodings import decode
from tuneforge.data.tagging import Entity
from tuneforge.errors import ConfigError, DataError

KEYS = ("type", "regex", "file", "encoding")
MAX_ENTRY = 200  # characters: a longer "name" means the file is not one name per line (a CSV, a paragraph)
_WORD_BEFORE = "(?<![A-Za-z0-9_])"
_WORD_AFTER = "(?![A-Za-z0-9_])"
_END = ""  # the trie's end-of-name marker: no character is the empty string


@dataclass(frozen=True)
class Rule:
    """One compiled ``ner.patterns`` entry: the type it finds and the expression that finds it."""

    type: str
    regex: re.Pattern
    key: str  # "ner.patterns[2]", to say which entry a match or a message comes from


@dataclass(frozen=True)
class RulePatterns:
    """The compiled rules of ``ner.patterns``, in config order (empty when there are none)."""

    rules: tuple[Rule, ...] = ()

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def types(self) -> list[str]:
        """The entity types the rules find, in config order, each once."""
        return list(dict.fromkeys(rule.type for rule in self.rules))

    def find(self, text: str) -> list[Entity]:
        """Every rule's matches in ``text``, sorted by position and never overlapping.

        Where matches of different rules overlap, the longer wins, then the rule listed first (an empty match,
        which a regex such as ``\\d*`` can make, is never an entity).
        """
        found = [(m.start(), m.end(), index, rule.type) for index, rule in enumerate(self.rules)
                 for m in rule.regex.finditer(text) if m.end() > m.start()]
        ranked = sorted(found, key=lambda c: (c[0] - c[1], c[2], c[0]))
        kept = _non_overlapping([(start, end, kind) for start, end, _, kind in ranked])
        return [Entity(start, end, kind) for start, end, kind in kept]

    def apply(self, text: str, model_entities: Sequence[tuple[Entity, float]]) -> list[dict]:
        """The model's entities with the rules' found in ``text`` merged in: :func:`merge`."""
        return merge(model_entities, self.find(text), text)


def compile_patterns(patterns: Sequence | None, base_dir: str | Path) -> RulePatterns:
    """Compile ``ner.patterns``: check every entry, compile its regex or read its dictionary file.

    Args:
        patterns: The entries, each a mapping ``{type, regex}`` or ``{type, file[, encoding]}``; None or empty
            for no rules.
        base_dir: Where relative dictionary paths start: the folder of the config file.

    Raises:
        ConfigError: Naming the entry (``ner.patterns[2]``) for anything wrong: not a mapping, an unknown key, no
            type, neither or both of regex and file, a regex that does not compile (with Python's reason) or
            matches the empty string, a dictionary file that is missing, unreadable, empty or not one name a line.
    """
    if not patterns:
        return RulePatterns()
    if isinstance(patterns, str | bytes | Mapping) or not isinstance(patterns, Sequence):
        raise ConfigError("ner.patterns must be a list of entries such as {type: ORDER, regex: 'ORD-\\d{6}'} "
                          "or {type: PRODUCT, file: products.txt}")
    return RulePatterns(tuple(_rule(entry, f"ner.patterns[{i}]", Path(base_dir)) for i, entry in enumerate(patterns)))


def _rule(entry, key: str, base_dir: Path) -> Rule:
    fields = _fields(entry, key)
    kind = fields.get("type")
    if not isinstance(kind, str) or not kind.strip():
        raise ConfigError(f"{key}: 'type' is missing: the entity type the rule finds, e.g. type: ORDER")
    if ("regex" in fields) == ("file" in fields):
        raise ConfigError(f"{key} needs exactly one of 'regex' (a regular expression) or 'file' (a dictionary, "
                          "one name a line)")
    if "regex" in fields:
        if "encoding" in fields:
            raise ConfigError(f"{key}: 'encoding' is for a dictionary file, not a regex")
        return Rule(kind.strip(), _compile_regex(fields["regex"], key), key)
    names = _read_dictionary(fields["file"], fields.get("encoding"), key, base_dir)
    return Rule(kind.strip(), re.compile(dictionary_regex(names)), key)


def _fields(entry, key: str) -> dict:
    """The entry's keys that are set (a config dataclass's None fields count as unset)."""
    if dataclasses.is_dataclass(entry) and not isinstance(entry, type):
        entry = dataclasses.asdict(entry)
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{key} must be a mapping with 'type' and 'regex' or 'file', "
                          f"got {type(entry).__name__} {entry!r}")
    for name in entry:
        if name not in KEYS:
            close = difflib.get_close_matches(str(name), KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{key}: unknown key '{name}'{hint}; the keys are {', '.join(KEYS)}")
    return {name: value for name, value in entry.items() if value is not None}


def _compile_regex(pattern, key: str) -> re.Pattern:
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"{key}: 'regex' must be a non-empty string, got {pattern!r}")
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"{key}: regex {pattern!r} does not compile: {error}") from None
    if compiled.fullmatch("") is not None:
        raise ConfigError(f"{key}: regex {pattern!r} matches the empty string, so it would find entities of "
                          "no text; use + rather than * (e.g. '\\d+' rather than '\\d*')")
    return compiled


def _read_dictionary(file, encoding: str | None, key: str, base_dir: Path) -> list[str]:
    """The names of a dictionary file, one a line, blank lines skipped, each once, in file order."""
    if not isinstance(file, str | Path) or not str(file):
        raise ConfigError(f"{key}: 'file' must be a path, got {file!r}")
    path = Path(file).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise ConfigError(f"{key}: dictionary file {file} not found (looked for {path})")
    try:
        text = decode(path.read_bytes(), str(file), encoding, what="a dictionary file").text
    except DataError as error:
        raise ConfigError(f"{key}: {error}") from None
    except OSError as error:
        raise ConfigError(f"{key}: dictionary file {file} cannot be read: {error.strerror}") from None
    names: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if len(name) > MAX_ENTRY:
            raise ConfigError(f"{key}: line {number} of {file} is {len(name):,} characters long; a dictionary "
                              f"holds one name a line (at most {MAX_ENTRY} characters)")
        if name:
            names[name] = None
    if not names:
        raise ConfigError(f"{key}: dictionary file {file} has no entries (one name a line)")
    return list(names)


def dictionary_regex(names: Iterable[str]) -> str:
    """One regular expression matching any of ``names``, longest first, as a trie (see the module docstring).

    Args:
        names: Non-empty strings, matched literally.

    Raises:
        ValueError: No names, or an empty one (it would match everywhere).
    """
    names = list(names)
    if not names or not all(names):
        raise ValueError("a dictionary needs at least one name and no empty ones")
    root: dict = {}
    for name in names:
        node = root
        for char in name:
            node = node.setdefault(char, {})
        node[_END] = {}
    branches = [(_WORD_BEFORE if _is_word(char) else "") + re.escape(char) + _trie_regex(child, char)
                for char, child in sorted(root.items())]
    return "|".join(branches)


def _trie_regex(node: dict, last: str) -> str:
    """The expression for what may follow a trie node; ``last`` is the character that led to it."""
    literal = ""
    while len(node) == 1 and _END not in node:  # a run of single characters is one literal: little nesting
        (last, node), = node.items()
        literal += re.escape(last)
    # Longer names first: the engine takes the first alternative that matches, so ending here comes last.
    branches = [re.escape(char) + _trie_regex(child, char) for char, child in sorted(node.items()) if char != _END]
    if _END in node:
        branches.append(_WORD_AFTER if _is_word(last) else "")
    if len(branches) == 1:
        return literal + branches[0]
    return literal + "(?:" + "|".join(branches) + ")"


def _is_word(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "_")


def merge(model_entities: Sequence[tuple[Entity, float]], rule_entities: Sequence[Entity], text: str) -> list[dict]:
    """The model's entities and the rules' together, sorted by position, never overlapping.

    A rule entity wins over every model entity it overlaps: rules are what the user asserted ("ORD- and six
    digits is an order number"), the model only what it learnt, so where they disagree the rule is kept and its
    score is 1.0. Overlapping rule entities keep the longer (then the earlier); overlapping model entities keep
    the higher score (then the longer, then the earlier), which a BIO decoder never produces but a caller's own
    list might.

    Args:
        model_entities: ``(entity, score)`` pairs from the model.
        rule_entities: Entities from :meth:`RulePatterns.find`.
        text: The text both were found in, for each entity's ``text``.

    Returns:
        ``{"type", "start", "end", "text", "score", "source"}`` per entity, ``source`` ``"model"`` or ``"rule"``.
    """
    rules = sorted(((e.start, e.end, (e.type, 1.0, "rule")) for e in rule_entities), key=lambda c: (c[0] - c[1], c[0]))
    model = sorted(((e.start, e.end, (e.type, float(score), "model")) for e, score in model_entities),
                   key=lambda c: (-c[2][1], c[0] - c[1], c[0]))
    kept = _non_overlapping([candidate for candidate in rules + model if candidate[1] > candidate[0]])
    return [{"type": kind, "start": start, "end": end, "text": text[start:end], "score": score, "source": source}
            for start, end, (kind, score, source) in kept]


def _non_overlapping(ranked: list[tuple[int, int, object]]) -> list[tuple[int, int, object]]:
    """Greedy: each ``(start, end, payload)`` in rank order is kept unless it overlaps one kept before; the kept
    ones come back sorted by position."""
    starts: list[int] = []  # of the kept spans, sorted; kept spans never overlap, so their ends sort the same
    ends: list[int] = []
    kept: dict[int, tuple[int, int, object]] = {}
    for candidate in ranked:
        start, end = candidate[0], candidate[1]
        at = bisect.bisect_right(starts, start)
        if (at > 0 and ends[at - 1] > start) or (at < len(starts) and starts[at] < end):
            continue
        starts.insert(at, start)
        ends.insert(at, end)
        kept[start] = candidate
    return [kept[start] for start in starts]
