"""Named entities end to end on real Chinese NER data (MSRA sentences): docs/ner.md's walk-through runs as written on
a user's BMES file, the tagger learns (entity F1 far above an untrained one's), its spans are exact, ``eval`` on a
doccano export agrees with the run, and an interrupted run resumes exactly."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from safetensors.torch import load_file

import tuneforge
from tests.test_cli import run_cli
from tuneforge.config import config_from_dict
from tuneforge.data.tagging import load_tagged_splits

pytestmark = pytest.mark.recipe

DOC = Path(__file__).resolve().parents[1] / "docs" / "ner.md"
# enough steps for the entity F1 to rise well above zero in seconds: 2 of Gemma's 18 layers, fully trained
QUICK = ["ner.layers=2", "method.k=2", "train.lr=3e-4", "train.head_lr=3e-3", "train.max_steps=30",
         "train.batch_size=16", "eval.batch_size=64", "data.max_length=64", "output.progress=false",
         "output.tensorboard=false"]


@pytest.fixture(scope="module")
def msra():
    """600 training and 120 held-out MSRA sentences (seeded, duplicates removed by the reader)."""
    data = config_from_dict({"task": "token_classification", "data": {"dataset": "msra-ner"}}).data
    splits = load_tagged_splits(data, seed=7)
    return splits.train[:600], splits.test[:120]


def _bmes(items) -> str:
    """Sentences as a BMES column file: B-/M-/E- inside an entity, S- for one character, O outside."""
    lines = []
    for item in items:
        tags = ["O"] * len(item.text)
        for e in item.entities:
            if e.end - e.start == 1:
                tags[e.start] = f"S-{e.type}"
            else:
                tags[e.start:e.end] = [f"B-{e.type}", *[f"M-{e.type}"] * (e.end - e.start - 2), f"E-{e.type}"]
        lines += [f"{char}\t{tag}" for char, tag in zip(item.text, tags, strict=True) if not char.isspace()] + [""]
    return "\n".join(lines) + "\n"


def _doccano(items) -> str:
    return "".join(json.dumps({"text": i.text, "label": [[e.start, e.end, e.type] for e in i.entities]},
                              ensure_ascii=False) + "\n" for i in items)


def _walkthrough() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("tuneforge ")]


def test_docs_walkthrough_trains_a_tagger_that_finds_entities(msra, tmp_path, monkeypatch, capsys):
    train, held_out = msra
    monkeypatch.chdir(tmp_path)
    (tmp_path / "人名地名.bmes").write_text(_bmes(train), encoding="utf-8")
    (tmp_path / "标注.jsonl").write_text(_doccano(held_out), encoding="utf-8")
    (tmp_path / "新闻.txt").write_text("\n".join(i.text for i in held_out[:5]) + "\n", encoding="utf-8")
    run_dir, printed = None, {}
    for args in _walkthrough():
        if run_dir is not None:
            args = [str(run_dir) if a.startswith("runs/") else a for a in args]
        if args[0] == "train" and args[1].startswith("configs/"):
            args = [args[0], str(DOC.parents[1] / args[1]), *QUICK, "train.max_steps=1", "data.max_examples=16"]
        elif args[0] == "train":
            args = args + QUICK
        code, out, err = run_cli(capsys, *args)
        assert code == 0, (args, err[-3000:])
        printed[args[0]] = out
        if args[0] == "train" and run_dir is None:
            run_dir = max((tmp_path / "runs").iterdir(), key=lambda p: p.stat().st_mtime)

    config = (tmp_path / "ner.yaml").read_text(encoding="utf-8")
    assert "name: gemma3-270m" in config and "tag_scheme: bmes" in config and "format: conll" in config
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    losses = [row["train_loss"] for row in history if "train_loss" in row]
    assert losses[-1] < losses[0] / 3, losses  # learning, not noise
    assert metrics["test"]["f1"] > 0.1, metrics["test"]  # an untrained tagger scores 0 (it finds no entities)
    assert set(metrics["test"]["per_type"]) == {"LOC", "ORG", "PER"}
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "Entities (test split)" in report and "| missed |" in report and "| spurious |" in report

    evaluated = printed["eval"]
    assert "entity F1" in evaluated and "120 sentences" in evaluated
    entities = [json.loads(line) for line in (tmp_path / "实体.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(entities) == 5
    for row in entities:
        for e in row["entities"]:
            assert row["text"][e["start"]:e["end"]] == e["text"] and e["type"] in {"PER", "LOC", "ORG"}
    _predictions_agree_with_eval(run_dir, held_out, tmp_path)


def _predictions_agree_with_eval(run_dir: Path, held_out, tmp_path: Path) -> None:
    """``tuneforge.load(run).predict`` finds the spans ``eval`` scored: its F1 on the doccano file, recomputed from
    the predicted spans, equals the F1 that eval wrote."""
    (eval_dir,) = [p for p in run_dir.iterdir() if p.name.startswith("eval-")]
    written = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
    tagger = tuneforge.load(run_dir)
    found = tagger.predict([i.text for i in held_out])
    gold = {(n, e.start, e.end, e.type) for n, i in enumerate(held_out) for e in i.entities}
    predicted = {(n, e["start"], e["end"], e["type"]) for n, spans in enumerate(found) for e in spans}
    hits = len(gold & predicted)
    f1 = 2 * hits / (len(gold) + len(predicted)) if gold or predicted else 0.0
    assert f1 == pytest.approx(written["f1"], abs=1e-9)


def test_an_interrupted_run_resumes_exactly(msra, tmp_path):
    """Stopped at step 4 of 8 (its checkpoint), resumed: the same CRF and head weights as a run never stopped,
    with augmentation (entities kept, tags realigned) and FGM on the embeddings in the run."""
    train, _ = msra
    conll = tmp_path / "train.bmes"
    conll.write_text(_bmes(train[:160]), encoding="utf-8")
    config = {"task": "token_classification", "name": "resume", "seed": 3, "deterministic": True,
              "model": {"name": "gemma3-270m"}, "method": {"name": "lora", "r": 4},
              "data": {"dataset": None, "train_file": str(conll), "max_length": 48,
                       "augment": {"synonym": 0.2, "swap": 0.1, "char_noise": 0.05, "probability": 0.7}},
              "ner": {"layers": 1, "crf": True},
              "train": {"max_steps": 8, "batch_size": 8, "lr": 3e-3, "checkpoint": {"every": 4, "keep_last": 3},
                        "adversarial": {"method": "fgm", "epsilon": 0.05}},
              "eval": {"every": 4},
              "output": {"dir": str(tmp_path / "runs"), "progress": False, "tensorboard": False}}
    whole = tuneforge.train(config)
    step4 = whole.dir / "checkpoints" / "step-00000004"
    assert step4.is_dir(), sorted(p.name for p in (whole.dir / "checkpoints").iterdir())
    names = ("adapter_model.safetensors", "crf.safetensors")
    uninterrupted = {name: load_file(whole.dir / "model" / name) for name in names}
    resumed = tuneforge.train(config, resume=step4)  # steps 5-8 again, into the same run folder
    assert resumed.dir == whole.dir and resumed.metrics["fit"]["steps"] == 8
    for name in names:
        a, b = uninterrupted[name], load_file(resumed.dir / "model" / name)
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), name
    assert whole.metrics["augmentation"]["items_augmented"] > 0 and whole.metrics["adversarial"]["method"] == "fgm"
