"""Run folders written by an earlier tuneforge (commit d4a0787, see tests/fixtures/make_legacy_runs.py) still
load, predict the same probabilities, evaluate, serve, export and resume with today's code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import tuneforge
from tuneforge.cli import main

LEGACY = Path(__file__).parent / "fixtures" / "legacy_runs"
EXPECTED = json.loads((LEGACY / "expected.json").read_text(encoding="utf-8"))
RUNS = ("lora-run", "full-run")


@pytest.fixture
def legacy(tmp_path, monkeypatch) -> Path:
    """A writable copy of the fixture folder, as the working directory (the configs use relative paths)."""
    copy = tmp_path / "legacy"
    shutil.copytree(LEGACY, copy)
    monkeypatch.chdir(copy)
    return copy


@pytest.mark.parametrize("run", RUNS)
def test_loads_and_predicts_what_the_old_code_predicted(run):
    model = tuneforge.load(LEGACY / run)
    got = [p.probabilities for p in model.predict(EXPECTED["texts"])]
    for row, want in zip(got, EXPECTED["probabilities"][run], strict=True):
        assert row.keys() == want.keys()
        for label in want:
            assert row[label] == pytest.approx(want[label], abs=1e-5)


def test_predict_and_eval_cli(legacy, capsys):
    assert main(["predict", "lora-run", "a dull, lifeless mess"]) == 0
    assert "a dull, lifeless mess" in capsys.readouterr().out
    assert main(["eval", "full-run", "--data", "reviews.csv", "--out", "eval-out"]) == 0
    metrics = json.loads((legacy / "eval-out" / "metrics.json").read_text(encoding="utf-8"))
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["labels"] == ["negative", "positive"]


def test_served_from_an_old_folder(tmp_path):
    from fastapi.testclient import TestClient

    from tuneforge.config import config_from_dict
    from tuneforge.serving.app import create_app
    from tuneforge.serving.keys import KeyStore
    from tuneforge.serving.models import inspect

    store = KeyStore(tmp_path / "keys.json")
    key = store.create("test")
    models = {"old": inspect("old", LEGACY / "lora-run")}
    with TestClient(create_app(models, config_from_dict({}).serve, store)) as client:
        for _ in range(100):  # models load in the background
            if client.get("/readyz").status_code == 200:
                break
            import time

            time.sleep(0.1)
        reply = client.post("/v1/classify", json={"model": "old", "texts": EXPECTED["texts"]},
                            headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 200, reply.text
    served = [row["probabilities"]["positive"] for row in reply.json()["data"]]
    want = [row["positive"] for row in EXPECTED["probabilities"]["lora-run"]]
    assert served == pytest.approx(want, abs=1e-4)


def test_exports_from_an_old_folder(legacy):
    assert main(["export", "lora-run", "--format", "merged", "--out", "merged"]) == 0
    merged = tuneforge.load(legacy / "merged").predict(EXPECTED["texts"])
    want = EXPECTED["probabilities"]["lora-run"]
    assert [p.probabilities["positive"] for p in merged] == pytest.approx([w["positive"] for w in want], abs=1e-4)


def test_resumes_an_old_checkpoint(legacy, capsys):
    """More epochs on an old run's checkpoint: it continues at step 20, not from scratch."""
    assert main(["train", "lora-run/config.yaml", "train.epochs=3", "--resume", "lora-run"]) == 0
    history = [json.loads(line) for line in (legacy / "lora-run" / "history.jsonl").read_text().splitlines()]
    steps = [record["step"] for record in history if "train_loss" in record]
    assert steps[0] == 2 and steps[-1] == 30  # the old records kept, ten new steps after them
    assert "resumed from" in capsys.readouterr().err


def test_latest_resume_refuses_a_changed_config(legacy, capsys):
    """`--resume` alone finds the newest run of the config (here an old one) and refuses what breaks exactness."""
    shutil.copytree(legacy / "lora-run", legacy / "runs" / "legacy-lora-20261201-214612")
    assert main(["train", "lora-run/config.yaml", "train.batch_size=8", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "train.batch_size: 16 -> 8" in err and "--resume-force" in err
