"""Decode the text files people really have: UTF-8, and what Excel and Windows write elsewhere (GB18030/GBK in
China, Big5 in Taiwan and Hong Kong, UTF-16, Windows-1252 in the West).

One policy for every text file tuneforge reads (CSV, TSV, JSON Lines, .txt): the encoding the user set
(``data.encoding``, ``--encoding``); else a byte-order mark; else UTF-8 when the bytes are valid UTF-8; else the
encoding charset-normalizer detects among a few sensible candidates. The whole file is then decoded strictly:
a byte that does not fit is one file-level error naming the file, the byte, its line and the fix, never
mojibake and never skipped rows. :class:`Decoded` carries the encoding used, so the console and reports can
name it ("read reviews.csv as GB18030 (detected)").
"""

from __future__ import annotations

import codecs
import itertools
import re
import sys
import unicodedata
from dataclasses import dataclass
from functools import cache

from tuneforge.errors import DataError

FIX = ("re-save the file as UTF-8 (Excel: File > Save As > 'CSV UTF-8') or set data.encoding / --encoding to "
       "the file's encoding (gb18030 for Chinese Excel exports, big5, utf-16, cp1252...)")

# Byte-order marks, UTF-32 first: UTF-32 LE's mark starts with UTF-16 LE's.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# What detection chooses among; on a tie the earlier wins, so a short Chinese file reads as Chinese. GB18030
# covers GBK and GB2312 (what Excel writes on a Chinese Windows); Windows-1252 is Western Excel's CSV.
CANDIDATES = ("gb18030", "big5", "cp1252", "shift_jis", "euc_kr", "latin_1")
_DISPLAY = {
    "utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": "UTF-16", "utf-16-le": "UTF-16 LE", "utf-16-be": "UTF-16 BE",
    "utf-32": "UTF-32", "utf-32-le": "UTF-32 LE", "utf-32-be": "UTF-32 BE", "gb18030": "GB18030", "gbk": "GBK",
    "gb2312": "GB2312", "big5": "Big5", "big5hkscs": "Big5-HKSCS", "cp950": "Big5 (cp950)",
    "cp1252": "Windows-1252", "iso8859-1": "Latin-1", "shift_jis": "Shift-JIS", "cp932": "Shift-JIS (cp932)",
    "euc_kr": "EUC-KR",
}
_SAMPLE_BYTES = 1 << 16  # enough text to judge a detection by, however large the file
_CHAOS_MARGIN = 0.05  # detections this close in charset-normalizer's "mess" count as a tie
_MIN_PLAUSIBLE = 0.6  # below this share of ordinary characters, no candidate is believable
_MIN_PLAUSIBLE_WIDE = 0.9  # UTF-16 without a mark decodes almost any even-length bytes: ask for clean text
_NON_ASCII = re.compile(rb"[\x80-\xff]+")
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


@dataclass(frozen=True)
class Decoded:
    """A file's text and how it was decoded.

    Attributes:
        text: The decoded text, without a byte-order mark.
        encoding: The Python codec used (``"utf-8"``, ``"utf-8-sig"``, ``"gb18030"``, ``"utf-16"``...).
        how: Why that encoding: ``"as set"``, ``"byte-order mark"``, ``"detected"`` or ``"UTF-8"``.
    """

    text: str
    encoding: str
    how: str

    @property
    def name(self) -> str:
        """The encoding as people write it: ``"GB18030"``, ``"UTF-16"``, ``"Windows-1252"``."""
        return display_name(self.encoding)

    @property
    def is_utf8(self) -> bool:
        return self.encoding in ("utf-8", "utf-8-sig")

    def note(self, file: str) -> str | None:
        """``"read reviews.csv as GB18030 (detected)"``, or None for UTF-8, which needs no mention."""
        return None if self.is_utf8 else f"read {file} as {self.name} ({self.how})"


def display_name(encoding: str) -> str:
    """``"gb18030"`` -> ``"GB18030"``, ``"cp1252"`` -> ``"Windows-1252"``; unknown names upper-cased."""
    try:
        key = codecs.lookup(encoding).name
    except LookupError:
        key = encoding
    return _DISPLAY.get(key, key.upper())


def announce(note: str | None) -> None:
    """Say on the console (stderr) which encoding a file was read in (a :meth:`Decoded.note`), if any."""
    if note is not None:
        print(note, file=sys.stderr)


def decode(data: bytes, file: str, encoding: str | None = None, what: str = "a text file") -> Decoded:
    """Decode a whole file by the policy above.

    Args:
        data: The file's bytes.
        file: The path as the user gave it, for messages.
        encoding: The encoding the user set (``data.encoding`` / ``--encoding``); None detects.
        what: What the file should be, for the message about binary files (``"a valid CSV file"``).

    Raises:
        DataError: One message for the whole file: an unknown encoding name, bytes that do not fit the
            encoding (with offset, line and fix), an encoding that cannot be detected, or a binary file.
    """
    if encoding is not None:
        return _decode_as_set(data, file, encoding, what)
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return Decoded(_strict(data, file, codec, "byte-order mark"), codec, "byte-order mark")
    if b"\x00" in data:  # UTF-8 and the legacy encodings never hold NUL bytes; UTF-16 and UTF-32 do
        return _decode_wide(data, file, what)
    try:
        return Decoded(data.decode("utf-8"), "utf-8", "UTF-8")
    except UnicodeDecodeError as error:
        if _mostly_utf8(data):
            raise DataError(_damaged_utf8_message(data, file, error)) from None
    codec = detect(data, file)
    return Decoded(_strict(data, file, codec, "detected"), codecs.lookup(codec).name, "detected")


def _decode_as_set(data: bytes, file: str, encoding: str, what: str) -> Decoded:
    codec = _codec(encoding)
    contradiction = _contradiction(data, codec)
    if contradiction:
        raise DataError(f"{file} {contradiction}, but data.encoding / --encoding says {display_name(codec)}: "
                        "remove the setting (tuneforge then reads the file as it is) or correct it")
    text = _strict(data, file, codec, "as set")
    if "\x00" in text:
        raise DataError(f"{file} is not {what} (it contains NUL bytes, so it looks binary)")
    return Decoded(text.removeprefix("\ufeff"), codec, "as set")


def _codec(encoding: str) -> str:
    """The codec of a name the user wrote; UTF-8 reads a byte-order mark too (as Excel's 'CSV UTF-8' has)."""
    try:
        b" ".decode(encoding, errors="ignore")  # refuses bytes-to-bytes codecs (base64), which lookup accepts
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise DataError(f"data.encoding / --encoding {encoding!r} is not an encoding Python knows; use e.g. "
                        "utf-8, gb18030, big5, utf-16 or cp1252") from None
    return "utf-8-sig" if codec == "utf-8" else codec


def _family(codec: str) -> str:
    return next((name for name in ("utf-8", "utf-16", "utf-32") if codec.startswith(name)), codec)


def _contradiction(data: bytes, codec: str) -> str | None:
    """What in the bytes says the set encoding is wrong, since decoding UTF-8 as GB18030 "works" (as mojibake)."""
    bom = next((name for mark, name in _BOMS if data.startswith(mark)), None)
    if bom is not None:
        return None if _family(bom) == _family(codec) else f"starts with a {display_name(bom)} byte-order mark"
    if _family(codec) == "utf-8" or b"\x00" in data:
        return None
    wide = _family(codec) in ("utf-16", "utf-32")
    if (wide or not data.isascii()) and _is_utf8(data):
        return "is valid UTF-8"
    return None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _strict(data: bytes, file: str, codec: str, how: str) -> str:
    try:
        return data.decode(codec).removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        raise DataError(undecodable_message(data, file, codec, how, error)) from None


def undecodable_message(data: bytes, file: str, codec: str, how: str, error: UnicodeDecodeError) -> str:
    """One line for a file that does not decode: file, encoding and why it was tried, byte, offset, line, fix."""
    byte = data[error.start : error.start + 1].hex().upper()
    return (f"{file}: cannot read the file as {display_name(codec)} ({how}): byte 0x{byte} at offset "
            f"{error.start:,} (line {line_of(data, error.start, codec)}) is not valid {display_name(codec)}. "
            f"Nothing was read; {FIX}")


def line_of(data: bytes, offset: int, codec: str = "utf-8") -> int:
    """The 1-based line that byte ``offset`` falls on."""
    if _family(codec) in ("utf-16", "utf-32"):
        return data[:offset].decode(codec, errors="replace").count("\n") + 1
    return data.count(b"\n", 0, offset) + 1


def _mostly_utf8(data: bytes) -> bool:
    """A UTF-8 file with a few broken bytes (not a GBK file, of which a few byte pairs happen to be UTF-8)."""
    text = data.decode("utf-8", errors="replace")
    broken = text.count("\ufffd")
    wide = len(text) - len(text.encode("ascii", errors="ignore")) - broken
    return wide >= 2 * broken


def _damaged_utf8_message(data: bytes, file: str, error: UnicodeDecodeError) -> str:
    byte = data[error.start : error.start + 1].hex().upper()
    return (f"{file}: the file is UTF-8 except for byte 0x{byte} at offset {error.start:,} (line "
            f"{line_of(data, error.start)}): it is damaged or mixes encodings. Nothing was read; fix that line "
            f"and {FIX}")


def _decode_wide(data: bytes, file: str, what: str) -> Decoded:
    """UTF-32 or UTF-16 saved without a byte-order mark, told apart by where the NUL bytes of ASCII fall."""
    options = ["utf-32-le", "utf-32-be"] if len(data) % 4 == 0 else []
    if len(data) % 2 == 0:
        odd_nuls = data[1::2].count(0)
        options += ["utf-16-le", "utf-16-be"] if odd_nuls >= data[0::2].count(0) else ["utf-16-be", "utf-16-le"]
    for codec in options:
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        sample = text[: _SAMPLE_BYTES // 2]
        if "\x00" not in text and "\n" in sample and plausible_share(sample) >= _MIN_PLAUSIBLE_WIDE:
            return Decoded(text, codec, "detected")
    raise DataError(f"{file} is not {what} (it contains NUL bytes, so it looks binary)")


def detect(data: bytes, file: str) -> str:
    """The likeliest of :data:`CANDIDATES` for bytes that are not UTF-8.

    charset-normalizer rules out encodings that decode into a mess; among those left about as clean, the
    one whose sample reads as ordinary characters (common Chinese characters, letters, punctuation) wins,
    then the order of :data:`CANDIDATES`.

    Raises:
        DataError: No candidate decodes the file into believable text.
    """
    from charset_normalizer import from_bytes

    matches = [m for m in from_bytes(data, cp_isolation=list(CANDIDATES), preemptive_behaviour=False)
               if m.encoding in CANDIDATES]
    sample = _non_ascii_sample(data)
    if matches:
        calmest = min(match.chaos for match in matches)
        close = [match.encoding for match in matches if match.chaos <= calmest + _CHAOS_MARGIN]
        shares = {codec: plausible_share(sample.decode(codec, errors="ignore")) for codec in close}
        codec = min(close, key=lambda name: (-round(shares[name], 2), CANDIDATES.index(name)))
        if shares[codec] >= _MIN_PLAUSIBLE:
            _check_not_mixed(data, file, codec)
            return codec
    error = _first_utf8_error(data)
    raise DataError(f"{file}: the file is not UTF-8 (byte 0x{data[error.start]:02X} at offset {error.start:,}, line "
                    f"{line_of(data, error.start)}) and its encoding cannot be detected. Nothing was read; {FIX}")


def _non_ascii_sample(data: bytes) -> bytes:
    """Where the candidates differ: the file's non-ASCII runs, each with the byte after it (which can end a
    two-byte character), from anywhere in the file. ASCII reads the same in every candidate."""
    pieces = [data[run.start() : run.end() + 1] for run in itertools.islice(_NON_ASCII.finditer(data), 20_000)]
    return b"\n".join(pieces)[:_SAMPLE_BYTES]


def _first_utf8_error(data: bytes) -> UnicodeDecodeError:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return error
    raise AssertionError("only called on bytes that are not UTF-8")


def _check_not_mixed(data: bytes, file: str, codec: str) -> None:
    """A Western file that also holds UTF-8 sequences was pasted together from two files: reading it as
    Windows-1252 would turn the UTF-8 part into mojibake ('cafÃ©')."""
    if codec not in ("cp1252", "latin_1"):
        return  # Chinese byte pairs often happen to form UTF-8 sequences, so the test says nothing there
    found = _UTF8_SEQUENCE.search(data)
    if found is None:
        return
    error = _first_utf8_error(data)
    raise DataError(f"{file} mixes encodings: line {line_of(data, found.start())} is UTF-8, line "
                    f"{line_of(data, error.start)} is not (byte 0x{data[error.start]:02X}). Nothing was read; save "
                    "the whole file in one encoding, UTF-8 preferably (Excel: File > Save As > 'CSV UTF-8')")


def plausible_share(text: str) -> float:
    """The share of non-ASCII characters that real text is made of: common Chinese characters (simplified or
    traditional), letters, punctuation, symbols; not control, private-use or rare characters."""
    unusual = [char for char in text if char > "\x7f" and char != "\ufffd"]
    if not unusual:
        return 1.0
    common = _common_hanzi()
    good = sum(1 for char in unusual if (char in common if _is_hanzi(char) else _is_ordinary(char)))
    return good / len(unusual)


def _is_hanzi(char: str) -> bool:
    return "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff" or char >= "\U00020000"


def _is_ordinary(char: str) -> bool:
    return unicodedata.category(char)[0] not in "C"


@cache
def _common_hanzi() -> frozenset[str]:
    """GB2312's level-1 characters and Big5's frequent ones: nearly all of everyday Chinese text, while a
    Chinese file decoded in the wrong encoding turns a good part of its characters into rare ones."""
    pairs = [(bytes((lead, trail)), "gb2312") for lead in range(0xB0, 0xD8) for trail in range(0xA1, 0xFF)]
    pairs += [(bytes((lead, trail)), "big5") for lead in range(0xA4, 0xC7)
              for trail in (*range(0x40, 0x7F), *range(0xA1, 0xFF))]
    return frozenset(pair.decode(codec, errors="ignore") for pair, codec in pairs) - {""}
