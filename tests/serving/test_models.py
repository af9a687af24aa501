"""What the server makes of a run before loading it, and which routes answer which kind: fast, no trained runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from safetensors.numpy import save_file

from tuneforge.config import ServeConfig
from tuneforge.errors import RunError
from tuneforge.serving.app import Server, create_app
from tuneforge.serving.metrics import Metrics
from tuneforge.serving.models import ServedModel, inspect
from tuneforge.serving.routes import FAMILIES, families
from tuneforge.tasks import TASKS


def fake_run(tmp_path: Path, task: str, weights: tuple[str, ...] = ("model.safetensors",), **meta) -> Path:
    """A run folder that passes the run reader's checks (real safetensors headers), with no model to load."""
    model_dir = tmp_path / "run" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "tuneforge.json").write_text(json.dumps({"task": task, **meta}), encoding="utf-8")
    for name in weights:
        if name.endswith(".safetensors"):
            save_file({"weight": np.zeros(2, dtype=np.float32)}, str(model_dir / name))
        else:
            (model_dir / name).write_bytes(b"\x80\x04")
    return model_dir.parent


SERVED = [entry.value for entry in TASKS if entry.value.serve is not None]


@pytest.mark.parametrize("task", SERVED, ids=lambda task: task.name)
def test_each_kind_has_a_family_that_adds_exactly_its_routes(task):
    app = FastAPI()
    FAMILIES[task.serve.kind](app, Server({}, ServeConfig(), Metrics()))
    assert set(task.serve.routes) <= {route.path for route in app.routes}
    assert FAMILIES[task.serve.kind] in families()


def test_the_app_has_every_served_route_whatever_it_serves():
    paths = {route.path for route in create_app({}).routes}
    assert {"/healthz", "/readyz", "/v1/models", "/metrics"} <= paths
    assert {route for task in SERVED for route in task.serve.routes} <= paths


@pytest.mark.parametrize("task", SERVED, ids=lambda task: task.name)
def test_inspect_takes_kind_routes_and_labels_from_the_registry(tmp_path, task):
    run = fake_run(tmp_path, task.name, task.weights[:1] or ("model.safetensors",), labels=["neg", "pos"])
    served = inspect("m", run)
    assert (served.task, served.kind, served.endpoints) == (task.name, task.serve.kind, list(task.serve.routes))
    assert served.labels == ["neg", "pos"] and served.state == "loading" and served.created > 0


def test_a_masked_lm_run_is_refused_with_the_reason(tmp_path):
    run = fake_run(tmp_path, "masked_lm")
    with pytest.raises(RunError) as error:
        inspect("m", run)
    assert str(error.value) == (f"{run}: a masked_lm run cannot be served (a masked-LM run is a starting point for a "
                                "classifier, not a model to serve)")


@pytest.mark.parametrize("weights", [("pytorch_model.bin",), ("model.safetensors", "extra.pt")])
def test_pickle_weights_are_refused(tmp_path, weights):
    run = fake_run(tmp_path, "text_classification", weights)
    with pytest.raises(RunError, match=r"holds pickle weights \(.*\), which can run code"):
        inspect("m", run)


def test_a_damaged_or_missing_run_gets_the_run_readers_message(tmp_path):
    with pytest.raises(RunError, match="no such run directory"):
        inspect("m", tmp_path / "nowhere")
    run = fake_run(tmp_path, "text_classification", ())
    with pytest.raises(RunError, match="no model weights"):
        inspect("m", run)


def test_a_served_model_answers_its_kinds_routes():
    served = ServedModel("w", Path("run"), "sft")
    assert served.kind == "language-model" and served.endpoints == ["/v1/completions", "/v1/chat/completions"]
