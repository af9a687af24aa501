"""Chinese text end to end on real reviews (the built-in zh-reviews): init chooses a model that reads Chinese,
a model that cannot is refused before training with the figures and the models that can, and a Gemma 3
classifier trains, reports, predicts and exports through the normal recipe."""

from __future__ import annotations

import csv
import json
import random
import re
import shlex
from pathlib import Path

import pytest

import tuneforge
from tests.test_cli import run_cli
from tuneforge.errors import DataError

pytestmark = pytest.mark.recipe


@pytest.fixture(scope="module")
def reviews() -> list[dict]:
    """60 real Chinese shopping reviews of up to 60 characters, 30 正面 and 30 负面."""
    from tuneforge.assets import dataset_file

    with dataset_file("zh-reviews").open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    random.Random(3).shuffle(rows)
    short = [r for r in rows if len(r["text"]) <= 60]
    return [r for r in short if r["label"] == "正面"][:30] + [r for r in short if r["label"] == "负面"][:30]


def _write(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["评论", "情感"])
        writer.writerows([r["text"], r["label"]] for r in rows)
    return path


@pytest.fixture(scope="module")
def gbk_file(tmp_path_factory, reviews) -> Path:
    return _write(tmp_path_factory.mktemp("zh") / "评论.csv", reviews, "gbk")


def _config(data: Path, out: Path, **sections) -> dict:
    config = {"task": "text_classification", "name": "zh", "model": {"name": "gemma3-270m"},
              "method": {"name": "lora", "r": 4},
              "data": {"dataset": None, "train_file": str(data), "text_column": "评论", "label_column": "情感",
                       "max_length": 64},
              "train": {"max_steps": 3, "batch_size": 8, "lr": 5e-4, "warmup_ratio": 0.0},
              "eval": {"batch_size": 16},
              "output": {"dir": str(out), "progress": False, "tensorboard": False}}
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


def test_init_chooses_a_model_that_reads_chinese(gbk_file, tmp_path, capsys):
    out = tmp_path / "zh.yaml"
    code, _, err = run_cli(capsys, "init", "--data", str(gbk_file), "--out", str(out))
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    assert "name: gemma3-270m" in text and "Chinese" in text
    assert "text_column: 评论" in text and "正面 (30)" in text and "负面 (30)" in text


def test_a_model_that_cannot_read_chinese_is_refused_before_training(gbk_file, tmp_path):
    config = _config(gbk_file, tmp_path / "runs", model={"name": "minilm-l6"})
    with pytest.raises(DataError) as refused:
        tuneforge.train(config)
    message = str(refused.value)
    assert "minilm-l6 cannot read this text" in message and "unknown tokens" in message and "[UNK]" in message
    assert "Set model.name: gemma3-270m" in message and "data.allow_unknown_tokens" in message
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("model"))


README_ZH = Path(__file__).resolve().parents[1] / "README.zh-CN.md"
# Each training command of the walk-through runs a few steps here: the accuracy is bench/chinese_text.py's job.
QUICK = ["train.max_steps=3", "train.batch_size=8", "eval.batch_size=16", "data.max_length=64",
         "output.progress=false", "output.tensorboard=false"]


def _walkthrough() -> list[list[str]]:
    """The `tuneforge ...` lines of README.zh-CN.md's bash blocks (the two make lines set up the machine)."""
    blocks = re.findall(r"```bash\n(.*?)```", README_ZH.read_text(encoding="utf-8"), flags=re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("tuneforge ")]


def test_readme_zh_walkthrough_runs_as_written(reviews, tmp_path, monkeypatch, capsys):
    """init -> train -> predict (a text, a file to Excel) -> eval on a GBK file, then the built-in config; the
    run it trains also exports to a plain transformers folder and refuses BERT-only pruning."""
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "评论.csv", reviews, "gbk")
    _write(tmp_path / "新评论.csv", reviews[:5] + reviews[-5:])
    _write(tmp_path / "标注.csv", reviews[10:20] + reviews[40:50], "gb18030")
    run_dir = None
    for args in _walkthrough():
        if run_dir is not None:
            args = [str(run_dir) if a == "runs/评论-2026..." else a for a in args]
        if args[0] == "train" and args[1].startswith("configs/"):  # a config of the repository, run from tmp_path
            args = [args[0], str(README_ZH.parent / args[1]), *args[2:], *QUICK, "train.max_steps=1",
                    "data.max_examples=8"]
        elif args[0] == "train":
            args = args + QUICK
        code, out, err = run_cli(capsys, *args)
        assert code == 0, (args, err)
        if args[0] == "train" and run_dir is None:
            run_dir = max((tmp_path / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
        if args[0] == "predict" and "--file" not in args:
            assert out.split("\t")[0] in {"正面", "负面"}
    assert "name: gemma3-270m" in (tmp_path / "评论.yaml").read_text(encoding="utf-8")
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "正面" in report and "负面" in report and "GB" in report  # labels and the detected encoding
    import openpyxl

    sheet = openpyxl.load_workbook(tmp_path / "预测.xlsx").active
    header, *rows = list(sheet.values)
    assert header[:2] == ("评论", "情感") and len(rows) == 10 and rows[0][0] == reviews[0]["text"]
    assert {row[header.index("predicted_label")] for row in rows} <= {"正面", "负面"}
    _exports_and_refuses_pruning(run_dir, tmp_path, capsys)


def _exports_and_refuses_pruning(run_dir: Path, tmp_path: Path, capsys) -> None:
    from transformers import AutoModelForSequenceClassification

    code, _, err = run_cli(capsys, "export", str(run_dir), "--merge", "--out", str(tmp_path / "merged"))
    assert code == 0, err
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert set(merged.config.id2label.values()) == {"正面", "负面"}
    code, _, err = run_cli(capsys, "prune", str(run_dir), "--method", "heads", "--amount", "0.3")
    assert code == 2 and "BERT-family encoders" in err


def test_a_language_model_that_spells_chinese_in_bytes_is_refused(tiny_llama, reviews, tmp_path):
    """SmolLM2's byte-level vocabulary spells most Chinese characters in two or three byte pieces: continued
    pretraining on Chinese stops before training, naming the figures and gemma3-270m."""
    corpus = tmp_path / "评论.txt"
    corpus.write_text("\n\n".join(r["text"] for r in reviews), encoding="utf-8")
    config = {"task": "causal_lm", "name": "zh-lm", "model": {"name": str(tiny_llama)}, "method": {"name": "full"},
              "data": {"dataset": None, "train_file": str(corpus), "max_length": 64},
              "train": {"max_steps": 1}, "output": {"dir": str(tmp_path / "runs"), "progress": False,
                                                    "tensorboard": False}}
    with pytest.raises(DataError, match="byte-fragment tokens") as refused:
        tuneforge.train(config)
    assert "Set model.name: gemma3-270m" in str(refused.value)
    config["data"]["allow_unknown_tokens"] = True  # the user's call: train anyway
    assert tuneforge.train(config).dir.is_dir()
