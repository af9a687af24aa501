"""One run reader: a broken run folder gets the same clear message from every command, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import tuneforge
from tuneforge.cli import main
from tuneforge.errors import RunError
from tuneforge.runs import read_run

LEGACY = Path(__file__).parent / "fixtures" / "legacy_runs"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _damage_json(path: Path) -> None:
    path.write_text('{"task": "text_classification", "labels": [', encoding="utf-8")


# (fixture run, file to break, how, what the message says)
BREAKAGES = [
    ("lora-run", "tuneforge.json", _damage_json, "damaged run metadata"),
    ("full-run", "model.safetensors", _truncate, "truncated"),
    ("full-run", "model.safetensors", lambda p: p.write_bytes(b"\xff" * 64), "not a valid safetensors file"),
    ("full-run", "model.safetensors", Path.unlink, "no model weights"),
    ("lora-run", "adapter_config.json", Path.unlink, "without adapter_config.json"),
    ("lora-run", "adapter_config.json", lambda p: p.write_text("{}", encoding="utf-8"), "not a PEFT adapter config"),
    ("lora-run", "adapter_model.safetensors", Path.unlink, "without adapter_model.safetensors"),
    ("full-run", "tuneforge.json",
     lambda p: p.write_text(json.dumps({"task": "summarisation"}), encoding="utf-8"), "unknown task 'summarisation'"),
]


@pytest.fixture
def broken(request, tmp_path) -> tuple[Path, str]:
    run, name, damage, message = request.param
    copy = tmp_path / run
    shutil.copytree(LEGACY / run, copy)
    damage(copy / "model" / name)
    return copy, message


@pytest.mark.parametrize("broken", BREAKAGES, indirect=True, ids=[f"{b[0]}-{b[1]}-{b[3][:18]}" for b in BREAKAGES])
def test_every_command_gives_the_same_message(broken, capsys, tmp_path):
    run, message = broken
    commands = [["predict", str(run), "a fine film"],
                ["eval", str(run), "--data", str(LEGACY / "reviews.csv")],
                ["export", str(run), "--format", "merged", "--out", str(tmp_path / "exported")]]
    for command in commands:
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (command, err)
    with pytest.raises(RunError, match=message.replace("(", r"\(")):
        tuneforge.load(run)
    from tuneforge.serving.models import inspect

    with pytest.raises(RunError, match=message.replace("(", r"\(")):
        inspect("broken", run)
    assert not (tmp_path / "exported").exists()


def test_intact_runs_read_cleanly():
    for name in ("lora-run", "full-run"):
        run = read_run(LEGACY / name)
        assert run.task == "text_classification" and run.model_dir.name == "model"
        assert run.run_dir == LEGACY / name
    assert read_run(LEGACY / "lora-run").is_adapter and not read_run(LEGACY / "full-run").is_adapter


def test_missing_and_unfinished_runs(tmp_path):
    with pytest.raises(RunError, match="no such run directory"):
        read_run(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    with pytest.raises(RunError, match="not a finished tuneforge run"):
        read_run(tmp_path / "half")
