"""Shared fixtures: a tiny random BERT and Llama (fast unit tests), real rt-sentences rows (recipe tests), and
trained runs that many test files read, trained once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config) -> None:
    """Under pytest-xdist (`make test` runs two workers), each worker and the processes it starts use one thread:
    two torch processes with two threads each on two cores run far slower than twice one."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


# `make test` hands whole files to its workers, slowest first so that no worker is left alone with a long
# file at the end. Files that share session fixtures (the served runs) go to one worker, which makes them once.
SAME_WORKER = {"tests/serving/test_api.py": "tests/serving", "tests/serving/test_server.py": "tests/serving"}
SLOWEST_FIRST = ("tests/test_compression.py", "tests/test_lm_recipes.py", "tests/serving", "tests/test_frozen.py",
                 "tests/test_chinese.py", "tests/test_token_classification.py", "tests/test_resume.py",
                 "tests/test_recipes.py", "tests/test_token_exports.py", "tests/test_image_classification.py",
                 "tests/test_compare.py", "tests/engine/test_extensions.py", "tests/test_distributed.py")


def _work_unit(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return SAME_WORKER.get(path, path)


def _start_rank(nodeid: str) -> int:
    unit = _work_unit(nodeid)
    return SLOWEST_FIRST.index(unit) if unit in SLOWEST_FIRST else len(SLOWEST_FIRST)


def pytest_collection_modifyitems(items) -> None:
    items.sort(key=lambda item: _start_rank(item.nodeid))  # stable: each file's tests stay together, in order


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    config.option.loadscopereorder = False  # keep the slowest-first order of the collection
    return ByFile(config, log)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with the real MiniLM tokenizer, saved as an HF folder."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from tuneforge.assets import resolve_model

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide Llama with the real SmolLM2 tokenizer and chat template, saved as an HF folder."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tuneforge.assets import resolve_model

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def rt_rows() -> list[dict]:
    """All rt-sentences rows (real data), as dicts with text/label/rating."""
    from tuneforge.assets import dataset_file

    with dataset_file("rt-sentences").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, rt_rows):
    """20 documents of real text (concatenated movie-review sentences)."""
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(20):
        text = " ".join(row["text"] for row in rt_rows[i * 15 : (i + 1) * 15])
        (folder / f"reviews{i:02d}.txt").write_text(text, encoding="utf-8")
    return folder


def _write_rt_csv(path: Path, rt_rows: list[dict]) -> Path:
    import csv

    positive = [r for r in rt_rows if r["label"] == "positive"][:200]
    rows = positive + [r for r in rt_rows if r["label"] == "negative"][:200]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)
    return path


@pytest.fixture
def rt_csv(tmp_path, rt_rows) -> Path:
    """A 400-row CSV of real, balanced rt-sentences rows."""
    return _write_rt_csv(tmp_path / "reviews.csv", rt_rows)


@pytest.fixture(scope="session")
def shared_rt_csv(tmp_path_factory, rt_rows) -> Path:
    """The same 400 rows as ``rt_csv``, written once: the data of the shared trained runs below (never edit it)."""
    return _write_rt_csv(tmp_path_factory.mktemp("shared-data") / "reviews.csv", rt_rows)


# --------------------------------------------------------------------------- trained runs shared by test files
# Each trains once per session. Tests only read them (load, predict, eval --out elsewhere, export --out elsewhere);
# a test that changes a run directory copies it first: shutil.copytree(run.dir, tmp_path / "run").


@pytest.fixture(scope="session")
def trained_text_run(tiny_bert, shared_rt_csv, tmp_path_factory):
    """The tiny BERT fully fine-tuned for one epoch on ``shared_rt_csv`` (320 train rows, 20 steps)."""
    import tuneforge

    return tuneforge.train(tiny_config(tiny_bert, shared_rt_csv, tmp_path_factory.mktemp("text-run")))


@pytest.fixture(scope="session")
def trained_text_lora_run(tiny_bert, shared_rt_csv, tmp_path_factory):
    """The tiny BERT with a rank-4 LoRA adapter (and a trained head), one epoch on ``shared_rt_csv``."""
    import tuneforge

    config = tiny_config(tiny_bert, shared_rt_csv, tmp_path_factory.mktemp("text-lora-run"),
                         method={"name": "lora", "r": 4})
    return tuneforge.train(config)


def tiny_config(model: Path, train_file: Path | None, tmp_path: Path, task: str = "text_classification",
                **sections) -> dict:
    """A config dict for a fast run on the tiny model; ``sections`` update the defaults."""
    config = {
        "task": task,
        "name": "test",
        "model": {"name": str(model)},
        "method": {"name": "full"},
        "data": {"dataset": None, "train_file": str(train_file) if train_file else None, "max_length": 32},
        "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "log_every": 1},
        "output": {"dir": str(tmp_path / "runs"), "progress": False, "tensorboard": False},
    }
    for key, value in sections.items():
        config.setdefault(key, {}).update(value)
    return config
