"""One run reader: a broken run folder gets the same clear message from every command, never a traceback, and the
message names the command that repairs it."""

from __future__ import annotations

import json
import re
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


def _base_model(name: str):
    """Point an adapter run at a base model folder that is not there (deleted, or on the machine it came from)."""
    def damage(path: Path) -> None:
        meta = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps(meta | {"base_model": name}), encoding="utf-8")
    return damage


RESUME = "tuneforge train {run}/config.yaml --resume {run}"  # lora-run keeps its checkpoints
RETRAIN = "tuneforge train {run}/config.yaml"  # full-run kept none
# (fixture run, file to break, how, what the message says, the repair it names)
BREAKAGES = [
    ("lora-run", "tuneforge.json", _damage_json, "damaged run metadata", RESUME),
    ("full-run", "model.safetensors", _truncate, "truncated", RETRAIN),
    ("full-run", "model.safetensors", lambda p: p.write_bytes(b"\xff" * 64), "not a valid safetensors file",
     RETRAIN),
    ("full-run", "model.safetensors", Path.unlink, "no model weights (model.safetensors is missing)", RETRAIN),
    ("lora-run", "adapter_model.safetensors", _truncate, "truncated", RESUME),
    ("lora-run", "adapter_config.json", Path.unlink, "without adapter_config.json", RESUME),
    ("lora-run", "adapter_config.json", lambda p: p.write_text("{}", encoding="utf-8"), "not a PEFT adapter config",
     RESUME),
    ("lora-run", "adapter_model.safetensors", Path.unlink, "without adapter_model.safetensors", RESUME),
    ("full-run", "config.json", Path.unlink, "no model config (config.json is missing)", RETRAIN),
    ("full-run", "tokenizer_config.json", _truncate, "damaged JSON", RETRAIN),
    ("lora-run", "tuneforge.json", _base_model("/gone/minilm-copy"), "needs its base model /gone/minilm-copy",
     "put the base model back at that path"),
    ("lora-run", "tuneforge.json", _base_model(r"D:\models\minilm"), r"needs its base model D:\models\minilm",
     "put the base model back at that path"),
    ("full-run", "tuneforge.json",
     lambda p: p.write_text(json.dumps({"task": "summarisation"}), encoding="utf-8"), "unknown task 'summarisation'",
     ""),
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def broken(request, tmp_path) -> tuple[Path, str, str]:
    run, name, damage, message, repair = request.param
    copy = tmp_path / run
    shutil.copytree(LEGACY / run, copy)
    damage(copy / "model" / name)
    return copy, message, repair.format(run=copy)


@pytest.fixture
def no_server(monkeypatch):
    """`serve` must refuse a broken run before any server starts."""
    import uvicorn

    def refuse(*args, **kwargs):
        raise AssertionError("a server was started")

    monkeypatch.setattr(uvicorn, "run", refuse)


@pytest.mark.parametrize("broken", BREAKAGES, indirect=True, ids=[f"{b[0]}-{b[1]}-{b[3][:18]}" for b in BREAKAGES])
def test_every_command_gives_the_same_message(broken, capsys, tmp_path, no_server):
    run, message, repair = broken
    before = _snapshot(run)
    commands = [["predict", str(run), "a fine film"],
                ["eval", str(run), "--data", str(LEGACY / "reviews.csv")],
                ["export", str(run), "--format", "merged", "--out", str(tmp_path / "exported")],
                ["serve", str(run), "--no-auth"],
                ["prune", str(run), "--method", "heads"],
                ["distill", str(run)],
                ["compress", str(run)]]
    for command in commands:
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert message in err and repair in err and "Traceback" not in err, (command, err)
        assert len(err.strip().splitlines()) == 1, (command, err)  # one line, no library noise
    with pytest.raises(RunError, match=re.escape(message)):
        tuneforge.load(run)
    from tuneforge.serving.models import inspect

    with pytest.raises(RunError, match=re.escape(message)):
        inspect("broken", run)
    assert not (tmp_path / "exported").exists()
    assert _snapshot(run) == before  # nothing written into the broken run


def test_the_resume_it_names_is_accepted_by_train(tmp_path, capsys, monkeypatch):
    """The repair a damaged adapter run names is a command `tuneforge train` accepts: it finds the checkpoint."""
    run = tmp_path / "lora-run"
    shutil.copytree(LEGACY / "lora-run", run)
    _truncate(run / "model" / "adapter_model.safetensors")
    assert main(["predict", str(run), "a fine film"]) == 2
    repair = capsys.readouterr().err.split("tuneforge train ", 1)[1].split()
    assert repair == [f"{run}/config.yaml", "--resume", str(run)]
    started = []
    monkeypatch.setattr("tuneforge.api.train", lambda config, **options: started.append(options) or 1 / 0)
    with pytest.raises(ZeroDivisionError):  # the stand-in for training, reached only once the resume checks pass
        main(["train", *repair])
    assert started == [{"resume": str(run), "resume_force": False}]


def _fake_export(tmp_path: Path, fmt: str, model_file: str | None, content: bytes = b"") -> Path:
    """An export folder beside its run, as `tuneforge export RUN --format FMT` leaves it (files from full-run)."""
    run = tmp_path / "full-run"
    shutil.copytree(LEGACY / "full-run", run)
    export = run / f"export-{fmt}"
    shutil.copytree(run / "model", export)
    (export / "model.safetensors").unlink()
    meta = json.loads((export / "tuneforge.json").read_text(encoding="utf-8"))
    meta |= {"format": fmt, "exported_from": str(run / "model")}
    (export / "tuneforge.json").write_text(json.dumps(meta), encoding="utf-8")
    if model_file:
        (export / model_file).write_bytes(content)
    return export


@pytest.mark.parametrize("fmt,model_file,content,message", [
    ("int8", None, b"", "an export (int8) without its model file (model-int8.safetensors is missing)"),
    ("int8", "model-int8.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{}", "not a valid safetensors file"),
    ("onnx", "model.onnx", b"\x08\x07\x12\x05onnx\x3a\xff\xff", "not a readable ONNX model"),
])
def test_a_damaged_export_says_to_export_again(tmp_path, capsys, no_server, fmt, model_file, content, message):
    export = _fake_export(tmp_path, fmt, model_file, content)
    repair = f"export it again: tuneforge export {export.parent} --format {fmt} --out {export} --force"
    for command in (["predict", str(export), "a fine film"], ["serve", str(export), "--no-auth"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert message in err and repair in err and "Traceback" not in err, err


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


def test_a_crashed_run_says_how_to_finish_it(tmp_path):
    run = tmp_path / "crashed"
    shutil.copytree(LEGACY / "lora-run", run)
    shutil.rmtree(run / "model")  # killed before the model was saved; its checkpoints remain
    with pytest.raises(RunError, match=re.escape(f"no model/tuneforge.json); finish or redo the run from its last "
                                                 f"checkpoint: tuneforge train {run}/config.yaml --resume {run}")):
        read_run(run)
