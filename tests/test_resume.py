"""Training that survives faults: killed with SIGKILL mid-epoch, resumed, identical to an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from safetensors.torch import load_file

from tests.conftest import tiny_config

pytestmark = pytest.mark.recipe


def write_config(tmp_path, rt_csv, out: str, **train) -> str:
    config = tiny_config("minilm-l6", rt_csv, tmp_path, method={"name": "lora"},
                         train={"epochs": 2, "lr": 3e-3, "checkpoint": {"every": 3, "keep_last": 2}, **train})
    config["deterministic"] = True
    config["output"]["dir"] = str(tmp_path / out)
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def tuneforge(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tuneforge.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return out + err


def run_dir(root) -> str:
    (only,) = [p for p in root.iterdir() if p.is_dir()]
    return only


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, rt_csv):
    reference = write_config(tmp_path, rt_csv, "reference")
    finished(tuneforge("train", reference))

    config = write_config(tmp_path, rt_csv, "killed")
    process = tuneforge("train", config)
    deadline = time.time() + 300
    checkpoints = None
    while time.time() < deadline and process.poll() is None:
        runs = list((tmp_path / "killed").glob("*/checkpoints"))
        steps = sorted(p.name for p in runs[0].glob("step-*")) if runs else []
        if steps and int(steps[-1][5:]) >= 9:  # epoch 1 has 20 batches: step 9 is mid-epoch
            os.kill(process.pid, signal.SIGKILL)
            checkpoints = runs[0]
            break
        time.sleep(0.02)
    process.wait()
    assert checkpoints is not None, "the run finished before it could be killed"
    assert process.returncode == -signal.SIGKILL

    # a kill during a checkpoint write leaves a partial folder; a torn newest checkpoint must be skipped
    newest = sorted(checkpoints.glob("step-*"))[-1]
    (checkpoints / f".partial-step-99999999-{os.getpid()}").mkdir()
    weights = newest / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])

    output = finished(tuneforge("train", config, "--resume", str(checkpoints.parent)))
    assert f"skipping checkpoint {newest}" in output
    assert "resumed from" in output and newest.name not in output.split("resumed from")[1].splitlines()[0]

    expected = load_file(run_dir(tmp_path / "reference") / "model" / "adapter_model.safetensors")
    resumed = load_file(checkpoints.parent / "model" / "adapter_model.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert (expected[name] == resumed[name]).all(), f"{name} differs after resume"
    reference_metrics = json.loads((run_dir(tmp_path / "reference") / "metrics.json").read_text())
    resumed_metrics = json.loads((checkpoints.parent / "metrics.json").read_text())
    assert resumed_metrics["test"] == reference_metrics["test"]
    assert resumed_metrics["fit"]["steps"] == reference_metrics["fit"]["steps"] == 40


def test_ctrl_c_checkpoints_and_says_how_to_resume(tmp_path, rt_csv):
    config = write_config(tmp_path, rt_csv, "runs")
    process = tuneforge("train", config)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if list((tmp_path / "runs").glob("*/checkpoints/step-*")):
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130
    assert "checkpoint written" in err and "--resume" in err
    output = finished(tuneforge("train", config, "--resume"))
    assert "resumed from" in output
    assert json.loads((run_dir(tmp_path / "runs") / "metrics.json").read_text())["fit"]["steps"] == 40


def test_nonfinite_loss_stops_with_step_and_rows(tiny_bert, rt_csv, tmp_path):
    from tuneforge.api import train
    from tuneforge.engine.loop import NonFiniteLoss

    config = tiny_config(tiny_bert, rt_csv, tmp_path, train={"lr": 1e30, "max_grad_norm": None})
    with pytest.raises(NonFiniteLoss) as error:
        train(config)
    message = str(error.value)
    assert "non-finite loss or gradient at step" in message and "reviews.csv:" in message
    assert "on_nonfinite: skip_batch" in message
