"""Tagged text for token classification (named entities), English and Chinese.

Every format is read into one representation: :class:`TaggedText`, a text with character-offset
:class:`Entity` spans and the units (``words``) that each get one tag. CoNLL column files in any of five tag
schemes (BIO, IOB1, BIOES, BMES, IO), doccano JSON Lines and Label Studio's JSON export all end up there, so the
recipe, the metrics and the splits never see a tag scheme: :func:`entity_tags` writes BIO for training and
:func:`tags_to_entities` reads a model's BIO predictions back into entities.

Files are decoded by :mod:`tuneforge.data.encodings` (GB18030, UTF-16 and byte-order marks work, and a file not
in UTF-8 is named on the console); parsing is :mod:`tuneforge.data.tag_formats`. Bad sentences become
:class:`~tuneforge.data.readers.Problem` entries naming the file and line, as text rows do, and
:func:`load_tagged_splits` stops on them or skips them (``data.on_bad_rows``) before any model loads.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import itertools
import random
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.config import DataConfig
from tuneforge.data.encodings import announce, decode
from tuneforge.data.formats import check_file, read_bytes
from tuneforge.data.hygiene import class_count_warnings, skipped_shares
from tuneforge.data.readers import PROBLEM_KINDS, Problem
from tuneforge.data.splits import Splits, resolve_files
from tuneforge.data.tag_formats import SCHEMES, is_cjk, parse_conll, parse_span_records, split_tag
from tuneforge.data.validation import format_problems
from tuneforge.errors import DataError

TAGGED_FORMATS: tuple[str, ...] = ("conll", "jsonl", "label-studio")
TAGGED_SUFFIXES: dict[str, str] = {
    ".conll": "conll", ".conll03": "conll", ".bio": "conll", ".iob": "conll", ".iob2": "conll", ".bioes": "conll",
    ".bmes": "conll", ".ner": "conll", ".txt": "conll", ".tsv": "conll",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "label-studio",
}
_FORMAT_ALIASES = {"tsv": "conll", "txt": "conll", "bio": "conll", "iob": "conll", "conll2003": "conll",
                   "json": "label-studio", "label_studio": "label-studio", "labelstudio": "label-studio",
                   "doccano": "jsonl", "ndjson": "jsonl", "jsonlines": "jsonl"}
_SCHEME_ALIASES = {"iob2": "bio", "iobes": "bioes"}
_NAMES = {"conll": "CoNLL", "jsonl": "JSON Lines", "label-studio": "Label Studio JSON"}
_SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Entity:
    """One named entity: ``text[start:end]`` is of type ``type`` (``"PER"``, ``"LOC"``, ``"公司"``)."""

    start: int
    end: int  # exclusive
    type: str


@dataclass
class TaggedText:
    """A sentence (or any text) with its entities: the one representation every tagged format is read into.

    Attributes:
        text: The text; CoNLL tokens are joined with one space, without one next to Chinese characters.
        entities: Sorted by start, non-overlapping, inside the text, never starting or ending with whitespace.
        source: Where it came from: ``"train.conll:17"`` (the sentence's first line), ``"ner.jsonl:4"`` or
            ``"export.json:item 3"``.
        words: The units that get one tag each, as ``(start, end)`` offsets into ``text``: a CoNLL file's tokens,
            else :func:`words_for` the text. Entities start and end on word edges.
    """

    text: str
    entities: tuple[Entity, ...]
    source: str
    words: tuple[tuple[int, int], ...]

    @property
    def labels(self) -> list[str]:
        """The sorted distinct entity types (what splits and data hygiene count as this example's labels)."""
        return sorted({entity.type for entity in self.entities})


@dataclass
class TaggedReadResult:
    """What :func:`read_tagged` found, shaped like :class:`~tuneforge.data.readers.ReadResult`.

    Attributes:
        examples: The good sentences only.
        problems: One entry per problem (a bad sentence can have several, each naming its line).
        total_rows: Sentences (CoNLL) or records (span files) in the file, good and bad.
        encoding: The codec the file was decoded with (``"utf-8"``, ``"gb18030"``...).
        encoding_note: ``"read train.conll as GB18030 (detected)"``; None for UTF-8.
        fmt: What was read: ``"conll"``, ``"jsonl"`` or ``"label-studio"`` (a JSON array).
        scheme: The CoNLL tag scheme used, given or inferred (``"bio"``, ``"bmes"``...); None for span files.
        rejected: ``(source, problem kind)`` of every sentence left out, for counting skipped sentences.
    """

    examples: list[TaggedText] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    total_rows: int = 0
    encoding: str | None = None
    encoding_note: str | None = None
    fmt: str = "conll"
    scheme: str | None = None
    rejected: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- words and tags


def split_words(text: str) -> list[tuple[int, int]]:
    """Pre-tokenise raw text into the units that get one tag each, as ``(start, end)`` offsets.

    Every CJK character (ideographs, kana, CJK punctuation, full-width forms) is its own word, as Chinese NER
    tags characters; a run of other letters, digits and combining marks is one word; every other non-space
    character (``,`` ``$`` ``%``) is its own word; whitespace separates and belongs to no word.

    Args:
        text: Any text.

    Returns:
        The words' offsets, in order.
    """
    words: list[tuple[int, int]] = []
    start = None
    for index, char in enumerate(text):
        if unicodedata.category(char)[0] in "LNM" and not is_cjk(char):
            if start is None:
                start = index
            continue
        if start is not None:
            words.append((start, index))
            start = None
        if not char.isspace():
            words.append((index, index + 1))
    if start is not None:
        words.append((start, len(text)))
    return words


def words_for(text: str, entities: Iterable[Entity]) -> tuple[tuple[int, int], ...]:
    """:func:`split_words` of ``text`` with any word cut where an entity starts or ends inside it (an entity
    ``iPhone`` in ``iPhone15``), so that every entity is a whole number of words.

    Args:
        text: The text.
        entities: Its entities (character offsets).

    Returns:
        The words' offsets, in order.
    """
    cuts = sorted({edge for entity in entities for edge in (entity.start, entity.end)})
    words: list[tuple[int, int]] = []
    for start, end in split_words(text):
        inner = cuts[bisect.bisect_right(cuts, start) : bisect.bisect_left(cuts, end)]
        words.extend(itertools.pairwise([start, *inner, end]))
    return tuple(words)


def entity_tags(item: TaggedText) -> list[str]:
    """One BIO tag per word of ``item`` (``"B-PER"``, ``"I-PER"``, ``"O"``): what a model is trained on.

    Args:
        item: A tagged text whose entities start and end on word edges (as every read one does).

    Returns:
        ``len(item.words)`` tags.
    """
    tags: list[str] = []
    entities = item.entities
    index, previous = 0, None
    for start, end in item.words:
        while index < len(entities) and entities[index].end <= start:
            index += 1
        if index < len(entities) and entities[index].start <= start and end <= entities[index].end:
            tags.append(("I-" if previous == index else "B-") + entities[index].type)
            previous = index
        else:
            tags.append("O")
            previous = None
    return tags


def tags_to_entities(tags: Sequence[str], words: Sequence[tuple[int, int]]) -> tuple[Entity, ...]:
    """Entities from one BIO tag per word, e.g. a model's predictions.

    ``B-X`` starts an entity, ``I-X`` continues an ``X`` entity; an ``I-X`` that does not continue one starts a
    new ``X`` entity (the usual decoding of model output). Fewer tags than words (a truncated input) tag the
    first words only.

    Args:
        tags: ``"B-PER"``, ``"I-PER"``, ``"O"``... (BIOES's ``E-``/``S-`` and bare types are read too).
        words: The words' ``(start, end)`` offsets, as in :attr:`TaggedText.words`.

    Returns:
        The entities, sorted, with character offsets spanning their first to last word.

    Raises:
        ValueError: More tags than words.
    """
    if len(tags) > len(words):
        raise ValueError(f"{len(tags)} tags for {len(words)} words")
    entities: list[Entity] = []
    start, kind = None, ""
    for index, tag in enumerate(tags):
        prefix, tag_kind = split_tag(tag)
        prefix = "I" if prefix is None else prefix
        if start is not None and (prefix in "BSO" or tag_kind != kind):
            entities.append(Entity(words[start][0], words[index - 1][1], kind))
            start = None
        if prefix == "O" or not tag_kind:
            continue
        if start is None:
            start, kind = index, tag_kind
        if prefix in "ES":
            entities.append(Entity(words[start][0], words[index][1], kind))
            start = None
    if start is not None:
        entities.append(Entity(words[start][0], words[len(tags) - 1][1], kind))
    return tuple(entities)


# --------------------------------------------------------------------------- reading files


def detect_tagged_format(path: str | Path, fmt: str | None = None) -> str:
    """``"conll"``, ``"jsonl"`` or ``"label-studio"``: ``fmt`` (``data.format``) if given, else from the suffix.

    Raises:
        DataError: An unknown or table format, or a suffix that says nothing.
    """
    if fmt is not None:
        name = fmt.strip().lower().lstrip(".")
        name = _FORMAT_ALIASES.get(name, name)
        if name not in TAGGED_FORMATS:
            raise DataError(f"data.format {fmt!r} cannot hold tagged text; use one of: {', '.join(TAGGED_FORMATS)} "
                            "(conll: a token and its tag per line)")
        return name
    suffix = Path(path).suffix.lower()
    if suffix in TAGGED_SUFFIXES:
        return TAGGED_SUFFIXES[suffix]
    raise DataError(f"{path}: cannot tell the format of tagged text from the suffix {suffix or '(none)'!r}; name the "
                    f"file .conll, .jsonl or .json, or set data.format to one of: {', '.join(TAGGED_FORMATS)}")


def read_tagged(path: str | Path, *, fmt: str | None = None, scheme: str = "auto",
                encoding: str | None = None) -> TaggedReadResult:
    """Read a tagged file, turning every bad sentence into a :class:`Problem` instead of an error.

    Args:
        path: A CoNLL column file, doccano JSON Lines or a Label Studio JSON export.
        fmt: ``"conll"``, ``"jsonl"`` or ``"label-studio"``; None: from the suffix (.conll/.bio/.bmes/.txt/.tsv:
            CoNLL; .jsonl: JSON Lines; .json: Label Studio). A JSON array and JSON Lines are told apart by content.
        scheme: CoNLL tag scheme: ``"auto"`` (inferred from the whole file and named on the console), ``"bio"``,
            ``"iob1"``, ``"bioes"``, ``"bmes"`` or ``"io"``.
        encoding: The file's encoding (``data.encoding``); None: byte-order mark, UTF-8, or detected.

    Returns:
        The good sentences as :class:`TaggedText`, the problems of the bad ones, counts, encoding and scheme.

    Raises:
        DataError: The file is missing, empty, binary, does not decode, or is not the format at all.
    """
    path = Path(path)
    check_file(path)
    name = detect_tagged_format(path, fmt)
    scheme = _check_scheme(scheme)
    decoded = decode(read_bytes(path), str(path), encoding, what=f"a valid {_NAMES[name]} file")
    if not decoded.text.strip():
        raise DataError(f"{path}: file is empty")
    note = decoded.note(str(path))
    announce(note)
    with _collector_paused():
        parsed = parse_conll(decoded.text, str(path), scheme) if name == "conll" else \
            parse_span_records(decoded.text, str(path))
        examples = [_tagged(raw.text, raw.spans, raw.words, raw.source) for raw in parsed.sentences]
    if name == "conll" and scheme == "auto":
        announce(f"{path}: tag scheme {parsed.scheme.upper()} (inferred from its tags; data.tag_scheme sets it)")
    return TaggedReadResult(examples, parsed.problems, parsed.total, decoded.encoding, note, parsed.container,
                            parsed.scheme, parsed.rejected)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector: a corpus is millions of small tuples and strings, none in a cycle, and
    the collector would walk them all again and again as they are made (msra-ner reads 2.5x faster)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_scheme(scheme: str) -> str:
    name = _SCHEME_ALIASES.get(scheme.strip().lower(), scheme.strip().lower())
    if name != "auto" and name not in SCHEMES:
        raise DataError(f"data.tag_scheme {scheme!r} is not a tag scheme; use auto, {', '.join(SCHEMES)}")
    return name


def _tagged(text: str, spans: list, words: list | None, source: str) -> TaggedText:
    entities = tuple(Entity(start, end, kind) for start, end, kind in spans)
    return TaggedText(text, entities, source, tuple(words) if words is not None else words_for(text, entities))


# --------------------------------------------------------------------------- splits


def load_tagged_splits(data: DataConfig, seed: int) -> Splits:
    """Read, split and validate the tagged text a config points at, before any model loads.

    ``data.train_file`` (with ``validation_file``/``test_file``) or a built-in tagged dataset (its prepared UTF-8
    BIO CoNLL files; ``data.format``, ``tag_scheme`` and ``encoding`` describe the user's files only). Missing
    splits are carved from train by ``data.split``, seeded, by sentence. A sentence whose text is also in an
    earlier split (train, then validation) is removed from the later one, so nothing scored was trained on;
    the count is a note. Sentences with entity types train lacks are problems like unseen labels.

    Args:
        data: The data section of the config.
        seed: The run's seed: the same seed gives the same split.

    Returns:
        :class:`~tuneforge.data.splits.Splits` of :class:`TaggedText`; ``labels()`` are the entity types.

    Raises:
        DataError: Listing the bad sentences (first 20 and a count) unless ``data.on_bad_rows`` is skip; no
            training sentences or no entity in them; an empty validation split.
    """
    seed = data.split_seed if data.split_seed is not None else seed
    files = resolve_files(data)
    own = bool(data.train_file)
    results = {split: read_tagged(path, fmt=data.format if own else None, scheme=data.tag_scheme if own else "bio",
                                  encoding=data.encoding if own else None) for split, path in files.items()}
    problems = [problem for result in results.values() for problem in result.problems]
    rejected = [pair for result in results.values() for pair in result.rejected]
    total_rows = sum(result.total_rows for result in results.values())
    notes = [result.encoding_note for result in results.values() if result.encoding_note]
    if own and data.tag_scheme == "auto":
        notes += [f"{files[split]}: tag scheme {result.scheme.upper()} (inferred)"
                  for split, result in results.items() if result.scheme]
    parts = _assign_splits({split: result.examples for split, result in results.items()}, data.split, seed)
    notes += drop_shared_sentences(parts)
    parts = [_cap(part, data.max_examples, seed) for part in parts]
    known = {kind for example in parts[0] for kind in example.labels}
    for index, name in ((1, "validation"), (2, "test")):
        problems += unseen_type_problems(known, parts[index], name, str(files.get(name, files["train"])))
        rejected += [(e.source, "unseen_label") for e in parts[index] if not set(e.labels) <= known]
        parts[index] = [example for example in parts[index] if set(example.labels) <= known]
    if problems and data.on_bad_rows == "error":
        raise DataError(format_problems(problems, total_rows))
    splits = Splits(parts[0], parts[1], parts[2], _describe_sources(files, None if own else data.dataset),
                    skipped_kinds(rejected), len({source for source, _ in rejected}), total_rows, [], notes)
    _check_usable(splits)
    splits.warnings += class_count_warnings(*parts)
    by_file = {str(path): len({s for s, _ in rejected if s.startswith(f"{path}:")}) for path in files.values()}
    warnings, skipped_notes = skipped_shares(by_file, {str(path): results[s].total_rows for s, path in files.items()})
    splits.warnings += warnings
    splits.notes += skipped_notes
    return splits


def split_sentences(examples: list[TaggedText], fractions: Sequence[float],
                    seed: int) -> tuple[list[TaggedText], list[TaggedText], list[TaggedText]]:
    """Train/validation/test parts of ``examples`` in ``fractions``, shuffled by ``seed`` (same seed, same split)."""
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    n_validation = round(len(shuffled) * fractions[1])
    n_test = round(len(shuffled) * fractions[2])
    n_train = len(shuffled) - n_validation - n_test
    return shuffled[:n_train], shuffled[n_train : n_train + n_validation], shuffled[n_train + n_validation :]


def drop_shared_sentences(parts: list[list[TaggedText]]) -> list[str]:
    """Remove, in place, validation sentences whose text is in train and test sentences whose text is in train or
    validation; return a note (also printed) for each split that lost some."""
    seen = {example.text for example in parts[0]}
    notes = []
    for index, name in ((1, "validation"), (2, "test")):
        kept = [example for example in parts[index] if example.text not in seen]
        removed = len(parts[index]) - len(kept)
        if removed:
            earlier = "train" if index == 1 else "train or validation"
            notes.append(f"removed {removed:,} {name} sentence{'' if removed == 1 else 's'} whose text is also in "
                         f"{earlier} (duplicates), so that no scored sentence was trained on")
            print(notes[-1], file=sys.stderr)
        seen.update(example.text for example in kept)
        parts[index] = kept
    return notes


def unseen_type_problems(known: set[str], examples: list[TaggedText], split_name: str,
                         file: str) -> list[Problem]:
    """One ``unseen_label`` problem per sentence and entity type that the training split never has.

    Args:
        known: The entity types of the training split (or of a trained model).
        examples: The validation, test or evaluation sentences.
        split_name: ``"validation"``, ``"test"``..., for the message.
        file: The file they came from, as the user gave it.
    """
    return [Problem(file, _location(example.source), "unseen_label",
                    f"entity type {kind!r} in the {split_name} split never appears in the training split")
            for example in examples for kind in example.labels if kind not in known]


def skipped_kinds(rejected: list[tuple[str, str]]) -> dict[str, int]:
    """Short problem name -> distinct sentences left out for it, most frequent first (``Splits.skipped``)."""
    counts = Counter(PROBLEM_KINDS.get(kind, kind.replace("_", " ")) for _, kind in dict.fromkeys(rejected))
    return dict(counts.most_common())


def _location(source: str) -> str:
    """``"train.conll:17"`` -> ``"line 17"``; ``"export.json:item 3"`` -> ``"item 3"``."""
    rest = source.rsplit(":", 1)[-1]
    return f"line {rest}" if rest.isdigit() else rest


def _assign_splits(read: dict[str, list[TaggedText]], fractions: list[float], seed: int) -> list[list[TaggedText]]:
    """The splits the user gave; the missing ones carved from train."""
    train = read["train"]
    if "validation" in read:
        return [train, read["validation"], read.get("test", [])]
    if "test" in read:
        share = fractions[1] / (fractions[0] + fractions[1])
        train, validation, _ = split_sentences(train, [1 - share, share, 0.0], seed)
        return [train, validation, read["test"]]
    return list(split_sentences(train, fractions, seed))


def _cap(examples: list[TaggedText], limit: int | None, seed: int) -> list[TaggedText]:
    """A seeded sample of ``limit`` sentences (not the head of a possibly sorted file)."""
    if limit is None or len(examples) <= limit:
        return examples
    return random.Random(seed).sample(examples, limit)


def _describe_sources(files: dict[str, Path], dataset: str | None) -> dict[str, str]:
    described = {split: str(path) for split, path in files.items()}
    if dataset:
        described = {split: f"{dataset} (built-in)" if split == "train" else f"{dataset} (built-in {path.name})"
                     for split, path in files.items()}
    for split in _SPLITS[1:]:
        described.setdefault(split, f"seeded split of {described['train']}")
    return described


def _check_usable(splits: Splits) -> None:
    if not splits.train:
        raise DataError(f"no usable training sentences in {splits.sources['train']}")
    if not splits.labels():
        raise DataError(f"the training sentences of {splits.sources['train']} have no entity (every tag is O, or "
                        "every span list is empty): token classification needs at least one entity type")
    if not splits.validation:
        raise DataError("the validation split is empty: add sentences, give data.validation_file or change data.split")
