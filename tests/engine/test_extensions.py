"""Training extensions: every event fires, in order, with effects the run shows; their state makes a run killed
with SIGKILL resume to bit-identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import tiny_config
from tests.engine.every_hook import REPLAYED, EveryHook
from tests.engine.test_loop import Scorer, config, loader
from tuneforge.engine.checkpoint import find_checkpoints
from tuneforge.engine.loop import fit
from tuneforge.engine.setup import make_accelerator
from tuneforge.errors import ConfigError, RunError
from tuneforge.extensions import Extension

ROOT = Path(__file__).resolve().parents[2]


class Recorder(Extension):
    """Logs each event as (its name, the event); with ``effects``, each event also changes what it may."""

    def __init__(self, name: str, log: list, effects: bool = False) -> None:
        self.name, self.log, self.effects = name, log, effects
        self.steps_seen: list[int] = []
        self.loaded: dict | None = None

    def fit_start(self, state):
        self.log.append((self.name, "fit_start"))
        if self.effects:  # an objective of its own: the task's loss is replaced
            state.loss_fn = lambda model, batch: (model.weight - batch["target"]) ** 2

    def transform_batch(self, state, batch):
        self.log.append((self.name, "transform_batch"))
        return {**batch, "target": torch.tensor(3.0)} if self.effects else batch

    def loss_terms(self, state, batch, loss):
        self.log.append((self.name, "loss_terms"))
        return loss + 0.5 * state.model.weight if self.effects else loss

    def after_backward(self, state, batch):
        self.log.append((self.name, "after_backward"))

    def after_optimizer_step(self, state):
        self.log.append((self.name, "after_optimizer_step"))
        self.steps_seen.append(state.step)

    def eval_metrics(self, state, metrics):
        self.log.append((self.name, "eval_metrics"))
        return metrics | {f"{self.name}_step": float(state.step)}

    def fit_end(self, state, result):
        self.log.append((self.name, "fit_end"))
        self.result_steps = result.steps

    def state_dict(self):
        return {"steps_seen": list(self.steps_seen)}

    def load_state_dict(self, state):
        self.loaded = state
        self.steps_seen = list(state["steps_seen"])


def test_events_fire_in_order_for_each_extension_in_list_order():
    log: list = []
    first, second = Recorder("first", log), Recorder("second", log)
    cfg = config(epochs=1, grad_accum=2)  # 5 batches: steps end after batches 2, 4 and 5
    result = fit(Scorer(), loader(), lambda m, b: (m.weight**2).sum(), lambda m: {"score": 0.0}, cfg,
                 make_accelerator(cfg, None), extensions=[first, second])
    events = [event for name, event in log if name == "first"]
    assert [name for name, _ in log[:2]] == ["first", "second"] and log[0][1] == "fit_start"
    per_batch = ["transform_batch", "loss_terms", "after_backward"]
    expected = (["fit_start"] + per_batch * 2 + ["after_optimizer_step"] + per_batch * 2 + ["after_optimizer_step"]
                + per_batch + ["after_optimizer_step", "eval_metrics", "fit_end"])
    assert events == expected
    assert [event for name, event in log if name == "second"] == expected
    assert all(log[i][0] == "first" and log[i + 1] == ("second", log[i][1]) for i in range(0, len(log), 2))
    assert first.steps_seen == [0, 1, 2]  # optimizer steps done before each one
    assert result.history[-1]["eval_first_step"] == result.history[-1]["eval_second_step"] == 3.0
    assert first.result_steps == 3


def test_each_training_event_changes_the_run():
    """Plain, the weight descends from 1. A loss of its own (set at fit start) pulling towards the target that the
    batch transform adds lifts it; so does an extra loss term; zeroed gradients after backward freeze it."""

    def final_weight(*extensions) -> float:
        model = Scorer()
        cfg = config(epochs=2, lr=0.1)
        fit(model, loader(), lambda m, b: (m.weight**2).sum(), lambda m: {"score": 0.0}, cfg,
            make_accelerator(cfg, None), extensions=list(extensions))
        return model.weight.item()

    class Lifts(Extension):
        def loss_terms(self, state, batch, loss):
            return loss - 10 * state.model.weight

    class Freezes(Extension):
        def after_backward(self, state, batch):
            state.model.weight.grad.zero_()

    assert final_weight() < 0.9
    assert final_weight(Recorder("pull", [], effects=True)) > 1.1  # towards 3 (less the 0.5 * weight term)
    assert final_weight(Lifts()) > 1.1
    assert final_weight(Freezes()) == 1.0  # no gradient left: AdamW never moves it (no decay on a scalar)


def test_state_is_checkpointed_restored_on_resume_and_refused_when_missing(tmp_path):
    cfg = config(epochs=2, checkpoint={"every": 2, "keep_last": 10})
    recorder = Recorder("rec", [])
    fit(Scorer(), loader(), lambda m, b: (m.weight**2).sum(), lambda m: {"score": 0.0}, cfg,
        make_accelerator(cfg, None), run_dir=tmp_path, extensions=[recorder])
    checkpoint = next(c for c in find_checkpoints(tmp_path / "checkpoints") if c.step == 4)
    assert (checkpoint.path / "extensions.pt").is_file()

    resumed = Recorder("rec", [])
    fit(Scorer(), loader(), lambda m, b: (m.weight**2).sum(), lambda m: {"score": 0.0}, cfg,
        make_accelerator(cfg, None), run_dir=tmp_path, resume=checkpoint, extensions=[resumed])
    assert resumed.loaded == {"steps_seen": [0, 1, 2, 3]}
    assert resumed.steps_seen == recorder.steps_seen == list(range(10))
    assert [e for _, e in resumed.log].count("fit_start") == 1 and resumed.log[0][1] == "fit_start"

    with pytest.raises(RunError, match="no state for the training extension 'late'"):
        fit(Scorer(), loader(), lambda m, b: (m.weight**2).sum(), lambda m: {"score": 0.0}, cfg,
            make_accelerator(cfg, None), run_dir=tmp_path, resume=checkpoint,
            extensions=[Recorder("rec", []), Recorder("late", [])])


def test_recipe_events_reach_the_run(tiny_bert, rt_csv, tmp_path):
    """The text recipe fires every recipe-level event: the adapted model, the extended data, the report."""
    import tuneforge

    hooks = EveryHook()
    run = tuneforge.train(tiny_config(tiny_bert, rt_csv, tmp_path, train={"max_steps": 25}), extensions=[hooks])
    assert hooks.calls["recipe_start"] == hooks.calls["build_model"] == hooks.calls["train_data"] == 1
    assert hooks.calls["fit_start"] == hooks.calls["fit_end"] == hooks.calls["report"] == 1
    assert max(hooks.seen_rows) == 320 + REPLAYED - 1  # the replayed rows were trained on
    assert hooks.calls["after_optimizer_step"] == 25 == hooks.calls["after_backward"] == hooks.calls["loss_terms"]
    assert run.metrics["every_hook"]["rows_seen"] == len(hooks.seen_rows) == 320 + REPLAYED
    assert "## Every hook" in (run.dir / "report.md").read_text(encoding="utf-8")
    history = [json.loads(line) for line in (run.dir / "history.jsonl").read_text().splitlines()]
    assert any("eval_average_distance" in record for record in history)

    class Refuses(Extension):
        def recipe_start(self, context):
            raise ConfigError("refused before anything loads")

    with pytest.raises(ConfigError, match="refused before"):
        tuneforge.train(tiny_config(tiny_bert, rt_csv, tmp_path / "refused"), extensions=[Refuses()])
    assert not (tmp_path / "refused" / "runs").exists()


# --------------------------------------------------------------------------- kill and resume


def _train(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.engine.every_hook", str(config), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env=os.environ | {"PYTHONPATH": str(ROOT)})


@pytest.mark.recipe
def test_every_hook_run_killed_and_resumed_ends_bit_identical(tiny_bert, rt_csv, tmp_path):
    """Killed (SIGKILL) during step 16 of 42, mid-epoch: resumed from the step-15 checkpoint, through an
    evaluation and the next epoch, it ends with the uninterrupted run's weights, bit for bit."""
    paths = {}
    for name in ("reference", "killed"):
        cfg = tiny_config(tiny_bert, rt_csv, tmp_path, train={"epochs": 2, "lr": 3e-3,
                                                              "checkpoint": {"every": 3, "keep_last": 2}})
        cfg |= {"deterministic": True}
        cfg["output"]["dir"] = str(tmp_path / name)
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(cfg))

    reference = _train(paths["reference"])
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed = _train(paths["killed"], "--kill-after", "16")
    assert killed.returncode == -9, killed.stderr[-3000:]
    (run_dir,) = (tmp_path / "killed").iterdir()
    assert not (run_dir / "model").exists()
    resumed = _train(paths["killed"], "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {run_dir / 'checkpoints' / 'step-00000015'} (step 15)" in resumed.stderr

    (reference_dir,) = (tmp_path / "reference").iterdir()
    expected = load_file(reference_dir / "model" / "model.safetensors")
    actual = load_file(run_dir / "model" / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"{name} differs after resume"
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (reference_dir, run_dir)]
    assert metrics[0]["test"] == metrics[1]["test"] and metrics[0]["fit"]["steps"] == metrics[1]["fit"]["steps"] == 42
    assert metrics[0]["every_hook"]["loss_average"] == metrics[1]["every_hook"]["loss_average"]
