"""Two processes (DDP over gloo, on CPU) train like one process with the same global batch."""

import json
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from tests.conftest import tiny_config
from tuneforge.assets import resolve_model

pytestmark = pytest.mark.recipe


@pytest.fixture(scope="module")
def dropout_free_bert(tmp_path_factory):
    # without dropout the two runs draw no random numbers, so only float summation order differs
    folder = tmp_path_factory.mktemp("bert-no-dropout")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model("minilm-l6")).save_pretrained(folder)
    return folder


def train(tmp_path, model, data, name: str, processes: int) -> dict:
    config = tiny_config(model, data, tmp_path, train={"epochs": 2, "batch_size": 16})
    config["output"]["dir"] = str(tmp_path / name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                "--master_port", str(29500 + processes)] if processes > 1 else [sys.executable]
    result = subprocess.run([*launcher, "-m", "tuneforge.cli", "train", str(path)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = list((tmp_path / name).iterdir())  # one run directory, written by one process
    return {"dir": run_dir, "metrics": json.loads((run_dir / "metrics.json").read_text())}


def test_two_processes_match_one(tmp_path, dropout_free_bert, rt_csv):
    single = train(tmp_path, dropout_free_bert, rt_csv, "single", 1)
    double = train(tmp_path, dropout_free_bert, rt_csv, "ddp", 2)
    for split in ("validation", "test"):  # every example scored exactly once
        assert double["metrics"][split]["num_examples"] == single["metrics"][split]["num_examples"] == 40
    assert double["metrics"]["fit"]["steps"] == single["metrics"]["fit"]["steps"] == 40
    a = load_file(single["dir"] / "model" / "model.safetensors")
    b = load_file(double["dir"] / "model" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=2e-4, rtol=1e-3, msg=f"{name} differs")
    assert abs(double["metrics"]["test"]["accuracy"] - single["metrics"]["test"]["accuracy"]) <= 0.05
