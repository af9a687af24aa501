"""Real runs to serve, each trained for a few steps from real weights on real data (about a minute in all):
a MiniLM text classifier, a SmolLM2 causal LM, an EfficientNet image classifier and a Frozen model."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

import tuneforge


def _config(tmp_path: Path, task: str, model: str, method: str, data: dict, **sections) -> dict:
    config = {
        "task": task, "name": task.replace("_", "-"), "model": {"name": model}, "method": {"name": method},
        "data": {"dataset": None, **data},
        "train": {"epochs": 1, "batch_size": 16, "lr": 2e-3, "log_every": 5, "warmup_ratio": 0.0},
        "output": {"dir": str(tmp_path / "runs"), "progress": False, "tensorboard": False},
    }
    for key, value in sections.items():
        config.setdefault(key, {}).update(value)
    return config


@pytest.fixture(scope="session")
def serving_runs(tmp_path_factory, rt_rows) -> dict[str, Path]:
    """Model name -> run directory, for every kind of run the server answers."""
    root = tmp_path_factory.mktemp("serving-runs")
    corpus = root / "reviews.txt"
    corpus.write_text("\n\n".join(r["text"] for r in rt_rows[:300]), encoding="utf-8")
    emoji = root / "emoji.jsonl"
    emoji.write_text(_emoji_rows(), encoding="utf-8")
    configs = {
        "sentiment": _config(root, "text_classification", "minilm-l6", "lora",
                             {"dataset": "rt-sentences", "max_examples": 400, "max_length": 48},
                             train={"max_steps": 25}),
        "writer": _config(root, "causal_lm", "smollm2-135m", "lora", {"train_file": str(corpus), "max_length": 64},
                          train={"max_steps": 2}, lm={"eval_blocks": 2}),
        "digits": _config(root, "image_classification", "efficientnet-lite0", "freeze",
                          {"dataset": "mnist-5k", "max_examples": 300},
                          image={"size": 32, "resize": 32, "random_resized_crop": False, "hflip": False},
                          train={"max_steps": 10, "batch_size": 32}),
        "captioner": _config(root, "frozen", "smollm2-135m", "full",
                             {"train_file": str(emoji), "split": [0.75, 0.25, 0.0]},
                             image={"size": 32, "resize": 32, "random_resized_crop": False, "hflip": False},
                             frozen={"binding_data": None}, train={"max_steps": 2, "batch_size": 8},
                             eval={"batch_size": 8}),
    }
    return {name: tuneforge.train(config).dir for name, config in configs.items()}


def _emoji_rows() -> str:
    from tuneforge.assets.datasets import dataset_folder

    folder = dataset_folder("twemoji")
    rows = [json.loads(line) for line in (folder / "captions.jsonl").read_text(encoding="utf-8").splitlines()][:24]
    return "".join(json.dumps({"image": str(folder / r["image"]), "text": r["text"]}) + "\n" for r in rows)


def png_base64(color=(200, 30, 30), size=(28, 28), fmt="PNG") -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="session")
def served_models(serving_runs):
    """The runs loaded once, as the server holds them; each test app shares them."""
    from tuneforge.serving.models import inspect

    models = {name: inspect(name, run) for name, run in serving_runs.items()}
    for served in models.values():
        served.load()
    return models


@pytest.fixture(scope="session")
def key_store(tmp_path_factory):
    """A key store with one active key ('app') and one revoked ('old'); returns (store, active, revoked)."""
    from tuneforge.serving.keys import KeyStore

    store = KeyStore(tmp_path_factory.mktemp("keys") / "api_keys.json")
    active = store.create("app")
    revoked = store.create("old")
    store.revoke("old")
    return store, active, revoked


@pytest.fixture(scope="session")
def auth(key_store) -> dict[str, str]:
    return {"Authorization": f"Bearer {key_store[1]}"}


def make_client(served_models, key_store, **settings):
    """A TestClient over a fresh app (its own limits, batchers and metrics) on the shared loaded models."""
    from fastapi.testclient import TestClient

    from tuneforge.config import config_from_dict
    from tuneforge.serving.app import create_app

    config = config_from_dict({"serve": settings}).serve
    return TestClient(create_app(dict(served_models), config, key_store[0]))
