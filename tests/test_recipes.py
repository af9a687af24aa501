"""Each method on the real pretrained minilm-l6 for a few steps: it learns, saves and reloads exactly.

Slower than the unit tests (marked ``recipe``); each run trains on 320 real rt-sentences rows.
"""

import json

import numpy as np
import pytest

import tuneforge
from tests.conftest import tiny_config

pytestmark = pytest.mark.recipe

# method -> (config section, learning rate, expected trainable share)
CASES = {
    "full": ({"name": "full"}, 1e-4, (1.0, 1.0)),
    "freeze": ({"name": "freeze"}, 2e-2, (0.0, 0.0001)),
    "topk": ({"name": "topk", "k": 2}, 3e-4, (0.1, 0.3)),  # embeddings are half of MiniLM
    "lora": ({"name": "lora"}, 3e-3, (0.001, 0.01)),
}


@pytest.mark.parametrize("method", list(CASES))
def test_method_learns_on_real_model(method, rt_csv, tmp_path, rt_rows):
    section, lr, (low, high) = CASES[method]
    config = tiny_config("minilm-l6", rt_csv, tmp_path, method=section,
                         train={"epochs": 2, "lr": lr, "warmup_ratio": 0.0})
    run = tuneforge.train(config)

    share = run.metrics["trainable_parameters"] / run.metrics["total_parameters"]
    assert low <= share <= high, f"{method}: {share:.4%} of parameters trainable"

    history = [json.loads(line) for line in (run.dir / "history.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in history if "train_loss" in r]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), f"{method}: loss did not go down: {losses}"

    texts = [r["text"] for r in rt_rows[-30:]]  # rows the run never saw
    first = tuneforge.load(run.dir).predict_proba(texts)
    np.testing.assert_array_equal(first, tuneforge.load(run.dir).predict_proba(texts))
