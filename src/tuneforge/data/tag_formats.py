"""The file formats of tagged text (named entities), parsed into character spans: the layer under
:mod:`tuneforge.data.tagging`, which turns what is parsed here into :class:`~tuneforge.data.tagging.TaggedText`.

- CoNLL-style column files: one token per line, the token first and its tag last, a blank line between
  sentences. Five tag schemes (BIO, IOB1, BIOES, BMES, IO), given or inferred from the whole file's tags.
- Span files: doccano JSON Lines (``"label": [[start, end, "TYPE"], ...]`` or ``"entities": [{"start_offset",
  "end_offset", "label"}]``) and Label Studio's JSON export (a list of tasks with annotations); a JSON array
  and JSON Lines are told apart by their content, and each record's shape by its keys.

A bad sentence or record never stops a read: it becomes :class:`~tuneforge.data.readers.Problem` entries naming
the file and line (or item) and what to do. The whole file is decoded first by :mod:`tuneforge.data.encodings`.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from tuneforge.data.formats import type_name
from tuneforge.data.readers import Problem
from tuneforge.errors import DataError

SCHEMES: tuple[str, ...] = ("bio", "iob1", "bioes", "bmes", "io")
# The prefixes each scheme writes before a type ("B-PER"); IO also takes bare types ("PER").
SCHEME_PREFIXES = {"bio": "BI", "iob1": "BI", "io": "I", "bioes": "BIES", "bmes": "BMES"}
# Ideographs, kana, CJK punctuation and full-width forms: written without spaces, so each is one unit.
# U+3000 (the ideographic space) is left out: it is whitespace.
CJK_CHARS = ("\u2e80-\u2fdf\u3001-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3200-\u33ff\u3400-\u4dbf"
             "\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff01-\uffef\U00020000-\U0003ffff")
_CJK = re.compile(f"[{CJK_CHARS}]")
_PREFIXED = re.compile(r"([A-Za-z])-(.*)", re.DOTALL)
_TWO_COLUMNS = re.compile(r"[^\t\n]+\t[^\t\n]+(?:\n[^\t\n]+\t[^\t\n]+)*")
_ODD_SPACE = re.compile(r"[^\S\t\n]")  # spaces (or \r) that a line-by-line read must strip
Span = tuple[int, int, str]  # (start, end, type): character offsets, end exclusive


@dataclass
class RawSentence:
    """One good sentence or record: its text, entity spans and (CoNLL) its tokens' offsets."""

    text: str
    spans: list[Span]
    words: list[tuple[int, int]] | None  # None for span files: the words are computed from the text
    source: str


@dataclass
class Parsed:
    """What a file held: the good sentences, the problems of the bad ones and which were dropped."""

    sentences: list[RawSentence] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (source, problem kind) of dropped sentences
    total: int = 0
    scheme: str | None = None
    container: str = "conll"  # "conll", "jsonl" or "label-studio" (a JSON array)

    def add(self, sentence: RawSentence | None, problems: list[Problem], source: str) -> None:
        """Count one sentence: kept when it has no problem, else its problems recorded and it dropped."""
        self.total += 1
        if problems:
            self.problems += problems
            self.rejected += [(source, kind) for kind in dict.fromkeys(p.kind for p in problems)]
        elif sentence is not None:
            self.sentences.append(sentence)


def is_cjk(char: str) -> bool:
    """True for a Chinese/Japanese character, CJK punctuation or a full-width form (text written without spaces)."""
    return _CJK.match(char) is not None


# --------------------------------------------------------------------------- CoNLL


@dataclass
class Block:
    """One sentence of a column file: each token's line number, the token, and its tag (None: no tag column)."""

    lines: list[int]
    tokens: list[str]
    tags: list[str | None]


def parse_conll(text: str, file: str, scheme: str) -> Parsed:
    """Parse a column file; ``scheme`` is one of :data:`SCHEMES` or ``"auto"`` (inferred from all its tags).

    Tokens that are only whitespace (a space written as a token of a character-per-line file) are dropped.
    """
    blocks = conll_blocks(text)
    if not blocks:
        raise DataError(f"{file}: no sentences found (a CoNLL file has one token and its tag per line)")
    if scheme == "auto":
        scheme = infer_scheme([block.tags for block in blocks])
    # A Chinese file with one character per line joins without spaces, its digits and Latin letters too.
    charwise = (all(max(map(len, block.tokens)) <= 1 for block in blocks)
                and any(_CJK.search("".join(block.tokens)) for block in blocks))
    parsed = Parsed(scheme=scheme, container="conll")
    checked: dict[str, tuple[str, str, str | None]] = {}  # tag -> check_tag(): a file has few distinct tags
    for block in blocks:
        sentence, problems = _conll_sentence(block, file, scheme, charwise, checked)
        parsed.add(sentence, problems, f"{file}:{block.lines[0]}")
    return parsed


def conll_blocks(text: str) -> list[Block]:
    """The sentences of a column file; blank lines and ``-DOCSTART-`` lines end a sentence.

    A token is a line's first field and its tag the last, split at tabs when the line has one, else at spaces.
    """
    if "\r" in text:  # Windows line ends: otherwise "\r\n\r\n" would not end a sentence below
        text = text.replace("\r\n", "\n")
    blocks: list[Block] = []
    line = 1  # the line each chunk starts on
    for chunk in text.split("\n\n"):
        first = line + len(chunk) - len(chunk.lstrip("\n"))
        line += chunk.count("\n") + 2
        body = chunk.strip("\n")
        if not body:
            continue
        # Most files are "token<TAB>tag" lines without spaces: split those in C, a line at a time only the rest.
        if _TWO_COLUMNS.fullmatch(body) and not _ODD_SPACE.search(body) and "-DOCSTART-" not in body:
            cells = body.replace("\t", "\n").split("\n")
            blocks.append(Block(list(range(first, first + len(cells) // 2)), cells[0::2], cells[1::2]))
        else:
            blocks += _careful_blocks(body, first)
    return blocks


def _careful_blocks(body: str, first_line: int) -> list[Block]:
    blocks = [Block([], [], [])]
    for number, raw in enumerate(body.split("\n"), start=first_line):
        line = raw.rstrip()
        parts = line.split("\t") if "\t" in line else line.split()
        if not line.strip() or parts[0].strip() == "-DOCSTART-":
            if blocks[-1].tokens:
                blocks.append(Block([], [], []))
            continue
        tag = parts[-1].strip() if len(parts) > 1 else None
        blocks[-1].lines.append(number)
        blocks[-1].tokens.append(parts[0].strip())
        blocks[-1].tags.append(tag or None)
    return [block for block in blocks if block.tokens]


def _conll_sentence(block: Block, file: str, scheme: str, charwise: bool,
                    checked: dict) -> tuple[RawSentence | None, list[Problem]]:
    lines, tokens, tags = block.lines, block.tokens, block.tags
    if "" in tokens:  # whitespace tokens
        keep = [index for index, token in enumerate(tokens) if token]
        lines, tokens, tags = [lines[i] for i in keep], [tokens[i] for i in keep], [tags[i] for i in keep]
    if not tokens:
        return None, [Problem(file, f"line {block.lines[0]}", "empty_text",
                              "the sentence has only whitespace tokens: remove it or write its tokens")]
    problems = []
    if None in tags:
        problems = [Problem(file, f"line {number}", "missing_tag", f"token {token!r} has no tag column: write the "
                            "token, a tab and its tag (O outside entities)")
                    for number, token, tag in zip(lines, tokens, tags, strict=True) if tag is None]
        tags = [tag or "O" for tag in tags]
    spans, tag_problems = decode_tags(tags, lines, scheme, file, checked)
    problems += tag_problems
    if problems:
        return None, problems
    text, words = join_tokens(tokens, charwise)
    entities = [(words[start][0], words[end - 1][1], kind) for start, end, kind in spans]
    return RawSentence(text, entities, words, f"{file}:{lines[0]}"), []


def join_tokens(tokens: list[str], charwise: bool = False) -> tuple[str, list[tuple[int, int]]]:
    """The text of a sentence's tokens and each token's offsets: one space between tokens, none next to a CJK
    character (Chinese is written without spaces), none at all in a character-per-line file (``charwise``)."""
    if charwise:
        return "".join(tokens), list(zip(range(len(tokens)), range(1, len(tokens) + 1), strict=True))
    parts: list[str] = []
    words: list[tuple[int, int]] = []
    position = 0
    for index, token in enumerate(tokens):
        if index and not (is_cjk(tokens[index - 1][-1]) or is_cjk(token[0])):
            parts.append(" ")
            position += 1
        words.append((position, position + len(token)))
        parts.append(token)
        position += len(token)
    return "".join(parts), words


def split_tag(tag: str) -> tuple[str | None, str]:
    """``"B-PER"`` -> ``("B", "PER")``, ``"O"`` -> ``("O", "")``, a bare ``"PER"`` -> ``(None, "PER")``."""
    if tag in ("O", "o"):
        return "O", ""
    match = _PREFIXED.fullmatch(tag)
    return (match.group(1).upper(), match.group(2)) if match else (None, tag)


def check_tag(tag: str, scheme: str) -> tuple[str, str, str | None]:
    """(prefix, type, None) for a valid tag of ``scheme`` (a bare IO type gets prefix ``"I"``), else
    (``"O"``, ``""``, what is wrong and what to do)."""
    prefix, kind = split_tag(tag)
    if prefix == "O":
        return "O", "", None
    if prefix is None:
        if scheme == "io":
            return "I", kind, None
        return "O", "", (f"tag {tag!r} has no B-/I- prefix: write B-{kind} or I-{kind}, or set data.tag_scheme: io "
                         "if the file tags entities with bare types")
    if not kind.strip():
        return "O", "", f"tag {tag!r} has no entity type after the prefix: write e.g. {prefix}-PER, or O"
    allowed = SCHEME_PREFIXES[scheme]
    if prefix not in allowed:
        fits = next((name for name in ("bio", "bioes", "bmes") if prefix in SCHEME_PREFIXES[name]), None)
        hint = f", or set data.tag_scheme: {fits} if the file is {fits.upper()}" if fits else ""
        valid = ", ".join(f"{p}-TYPE" for p in allowed)
        return "O", "", f"tag {tag!r} is not among the {scheme.upper()} tags (O, {valid}): fix the tag{hint}"
    return prefix, kind, None


def decode_tags(tags: list[str], lines: list[int], scheme: str, file: str,
                checked: dict | None = None) -> tuple[list[Span], list[Problem]]:
    """Token spans ``(first, last + 1, type)`` of one sentence's tags (``lines``: each tag's line) under ``scheme``.

    An I-/M-/E- that does not continue an entity of its type is an ``orphan_inside`` problem under the strict
    schemes (BIO, BIOES, BMES); under IOB1 and IO an I- starts an entity. An entity left open at an O (BIOES
    without its E-) ends there. A tag the scheme does not have is a ``bad_tag`` problem.
    """
    checked = {} if checked is None else checked
    spans: list[Span] = []
    problems: list[Problem] = []
    start, open_kind, last = None, "", -2  # the open entity's first token and type; the last tag not O
    for index in [index for index, tag in enumerate(tags) if tag != "O"]:  # most tags are O: skip them in C
        tag = tags[index]
        if tag not in checked:
            checked[tag] = check_tag(tag, scheme)
        prefix, kind, error = checked[tag]
        if error:
            problems.append(Problem(file, f"line {lines[index]}", "bad_tag", error))
        if start is not None and last != index - 1:  # an O came between
            spans.append((start, last + 1, open_kind))
            start = None
        continues = start is not None and open_kind == kind and prefix in "IME"
        if start is not None and not continues:
            spans.append((start, index, open_kind))
            start = None
        if prefix in "IME" and not continues:
            if prefix != "I" or scheme not in ("iob1", "io"):
                previous = tags[index - 1] if index else None
                problems.append(Problem(file, f"line {lines[index]}", "orphan_inside",
                                        _orphan(tag, kind, previous, scheme)))
            start, open_kind = index, kind
        elif prefix == "B":
            start, open_kind = index, kind
        elif prefix == "S":
            spans.append((index, index + 1, kind))
        if prefix == "E":
            spans.append((start, index + 1, kind))
            start = None
        last = index
    if start is not None:
        spans.append((start, last + 1, open_kind))
    return spans, problems


def _orphan(tag: str, kind: str, previous: str | None, scheme: str) -> str:
    after = "the start of the sentence" if previous is None else previous
    if scheme == "bio":
        return (f"{tag} follows {after}, but in BIO an entity starts with B-{kind}: fix the tag, or set "
                "data.tag_scheme: iob1 if your file starts entities with I-")
    return (f"{tag} follows {after}, but in {scheme.upper()} an entity starts with B-{kind} (or is S-{kind} "
            "alone): fix the tag")


def infer_scheme(sentences: list[list[str | None]]) -> str:
    """The scheme a file's tags are written in: M- means BMES, S-/E- BIOES, bare types or I- without any B- IO,
    I- starting entities while B- only separates neighbours of one type IOB1; anything else (ambiguous) BIO."""
    parts = {tag: split_tag(tag) for tags in sentences for tag in set(tags) if tag is not None}
    prefixes = {prefix for prefix, _ in parts.values() if prefix not in (None, "O")}
    if "M" in prefixes:
        return "bmes"
    if prefixes & {"S", "E"}:
        return "bioes"
    if not prefixes:
        return "io" if any(prefix is None for prefix, _ in parts.values()) else "bio"
    if "B" not in prefixes:
        return "io"
    kind_of = {tag: kind if prefix not in (None, "O") else None for tag, (prefix, kind) in parts.items()}
    inside_starts, begin_starts = False, False
    for tags in sentences:
        for index in [index for index, tag in enumerate(tags) if tag != "O" and tag is not None]:
            prefix, kind = parts[tags[index]]
            starts = index == 0 or kind_of.get(tags[index - 1]) != kind
            inside_starts |= starts and prefix == "I"
            begin_starts |= starts and prefix == "B"
    return "iob1" if inside_starts and not begin_starts else "bio"


# --------------------------------------------------------------------------- spans: doccano, Label Studio


def parse_span_records(text: str, file: str) -> Parsed:
    """Parse a JSON array (Label Studio's export) or JSON Lines of span records (doccano)."""
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{file} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}): "
                            "export it again (Label Studio: Export > JSON), or write one JSON object per line "
                            "(JSON Lines)") from None
        if not isinstance(items, list):
            raise DataError(f"{file}: expected a JSON array of tasks, found {type_name(items)}")
        records = [(f"item {n}", f"{file}:item {n}", item, None) for n, item in enumerate(items, start=1)]
        container = "label-studio"
    else:
        records = list(_json_lines(text, file))
        container = "jsonl"
    parsed = Parsed(container=container)
    for location, source, value, error in records:
        if error is not None:
            parsed.add(None, [Problem(file, location, "bad_json", error)], source)
            continue
        sentence, problems = _record(value, file, location, source)
        parsed.add(sentence, problems, source)
    return parsed


def _json_lines(text: str, file: str):
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"line {number}", f"{file}:{number}", json.loads(line), None))
        except json.JSONDecodeError as err:
            rows.append((f"line {number}", f"{file}:{number}", None,
                         f"not a JSON object ({err.msg} at column {err.colno})"))
        except RecursionError:
            rows.append((f"line {number}", f"{file}:{number}", None, "not a JSON object (nested too deeply)"))
    bad = sum(1 for row in rows if row[3] is not None)
    if bad > len(rows) - bad:
        raise DataError(f"{file} is neither JSON Lines (one object per line: {bad} of {len(rows)} lines are not "
                        "JSON) nor a JSON array: export it again as JSONL (doccano) or JSON (Label Studio)")
    return rows


def _record(value: Any, file: str, location: str, source: str) -> tuple[RawSentence | None, list[Problem]]:
    def problem(kind: str, message: str) -> tuple[None, list[Problem]]:
        return None, [Problem(file, location, kind, message)]

    if not isinstance(value, dict):
        return problem("bad_json", f"not a JSON object (found {type_name(value)})")
    if "annotations" in value or "completions" in value or isinstance(value.get("data"), dict):
        text, items, failure = _label_studio_task(value)
    else:
        text, items, failure = _doccano_record(value)
    if failure is not None:
        return problem(*failure)
    if not isinstance(text, str):
        return problem("wrong_type" if text is not None else "empty_text",
                       f"the text is {type_name(text)}, not a string" if text is not None else "the text is missing")
    if not text.strip():
        return problem("empty_text", "the text is empty" + (" (only whitespace)" if text else ""))
    spans, problems = check_spans(text, items, file, location)
    return (None, problems) if problems else (RawSentence(text, spans, None, source), [])


def _doccano_record(record: dict) -> tuple[Any, Any, tuple[str, str] | None]:
    key = next((name for name in ("label", "labels", "entities") if name in record), None)
    if key is None or record[key] is None:
        return None, None, ("missing_label", "no entity spans: the record needs a 'label' (or 'labels' or "
                                             "'entities') list, [] when it has no entity")
    if not isinstance(record[key], list):
        return None, None, ("wrong_type", f"'{key}' is {type_name(record[key])}, not a list of spans")
    return record.get("text"), record[key], None


def _label_studio_task(task: dict) -> tuple[Any, Any, tuple[str, str] | None]:
    data = task.get("data")
    if not isinstance(data, dict):
        return None, None, ("wrong_type", f"the task's 'data' is {type_name(data)}, not an object holding the text")
    text = data["text"] if "text" in data else next((v for v in data.values() if isinstance(v, str)), None)
    annotations = [a for a in (task.get("annotations") or task.get("completions") or [])
                   if isinstance(a, dict) and not a.get("was_cancelled")]
    if not annotations:
        return text, None, ("missing_label", "the task has no annotation (never labelled, or every annotation was "
                                             "cancelled): label it in Label Studio or leave it out of the export")
    result = annotations[0].get("result") or []
    if not isinstance(result, list):
        return text, None, ("wrong_type", f"the annotation's 'result' is {type_name(result)}, not a list")
    values = [r["value"] for r in result if isinstance(r, dict) and isinstance(r.get("value"), dict)
              and ("labels" in r["value"] or r.get("type") == "labels")]
    if isinstance(text, str):
        values = [_from_utf16(text, value) for value in values]
    return text, values, None


def _from_utf16(text: str, value: dict) -> dict:
    """Label Studio counts offsets in UTF-16 units (JavaScript strings), so each emoji or rare CJK character
    (outside the BMP) before a span shifts it by one: fixed when the span's own text shows it."""
    start, end, shown = value.get("start"), value.get("end"), value.get("text")
    if not (type(start) is int and type(end) is int and isinstance(shown, str)) or text[start:end] == shown:
        return value
    if max(map(ord, text)) < 0x10000:
        return value
    units = list(itertools.accumulate((2 if ord(char) >= 0x10000 else 1 for char in text), initial=0))
    index = {unit: position for position, unit in enumerate(units)}
    if start in index and end in index and text[index[start] : index[end]] == shown:
        return {**value, "start": index[start], "end": index[end]}
    return value


def check_spans(text: str, items: list, file: str, location: str) -> tuple[list[Span], list[Problem]]:
    """Validated, whitespace-trimmed, sorted spans of one text; problems for bad, outside or overlapping ones."""
    spans: set[Span] = set()
    problems: list[Problem] = []
    for item in items:
        span, failure = _span_item(item, text)
        if failure is not None:
            problems.append(Problem(file, location, *failure))
        else:
            spans.add(span)
    ordered = sorted(spans)
    for first, second in itertools.pairwise(ordered):
        if second[0] < first[1]:
            problems.append(Problem(file, location, "span_overlap", (
                f"spans {_show(first, text)} and {_show(second, text)} overlap: tuneforge tags flat entities, one "
                "type per character; keep one of them")))
    return ordered, problems


def _span_item(item: Any, text: str) -> tuple[Span | None, tuple[str, str] | None]:
    if isinstance(item, list) and len(item) == 3:
        start, end, kind = item
    elif isinstance(item, dict):
        start, end = item.get("start_offset", item.get("start")), item.get("end_offset", item.get("end"))
        kind = item.get("labels", item.get("label"))
        if isinstance(kind, list) and len(kind) != 1:
            return None, ("wrong_type", f"span {_short(item)} has {len(kind)} labels; give each span one type")
        kind = kind[0] if isinstance(kind, list) else kind
    else:
        return None, ("wrong_type", f"span {_short(item)} is not [start, end, type] or an object with "
                                    "start_offset/end_offset/label (or start/end/labels)")
    start, end = _offset(start), _offset(end)
    if start is None or end is None:
        return None, ("wrong_type", f"span {_short(item)}: start and end must be whole numbers")
    if not isinstance(kind, str) or not kind.strip():
        return None, ("missing_label", f"span {_short(item)} has no entity type")
    kind = kind.strip()
    if start < 0 or end > len(text):
        return None, ("span_outside", f"span [{start}, {end}) {kind} lies outside the text ({len(text)} characters): "
                                      "offsets count characters from 0, the end exclusive")
    while start < end and text[start].isspace():  # annotators often catch a neighbouring space
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start >= end:
        return None, ("empty_span", f"span {_short(item)} {kind} covers no characters (or only whitespace): "
                                    "its start must be before its end")
    return (start, end, kind), None


def _offset(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else None


def _show(span: Span, text: str) -> str:
    return f"[{span[0]}, {span[1]}) {span[2]} {text[span[0] : span[1]]!r}"


def _short(item: Any) -> str:
    shown = json.dumps(item, ensure_ascii=False, default=str)
    return shown if len(shown) <= 80 else shown[:77] + "..."
