"""README's "Few labels" commands and docs/low_data.md's commands and configs run as written (a few steps each, on
a tiny BERT): augmentation, FGM, adapters, seeds -> ensemble, paraphrases, eval --perturb."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_config
from tuneforge.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["train.max_steps=3", "output.progress=false", "output.tensorboard=false"]

pytestmark = pytest.mark.recipe


def _commands(path: Path, section: str | None = None) -> list[list[str]]:
    text = path.read_text(encoding="utf-8")
    if section:
        text = text.split(f"## {section}")[1].split("\n## ")[0]
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("tuneforge ")]


def _yaml_blocks(path: Path) -> list[dict]:
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", path.read_text(), flags=re.S)]


def _run(capsys, args: list[str]) -> str:
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, (args, captured.err[-3000:])
    return captured.out


def _newest_run(folder: Path) -> Path:
    return max((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)


def test_readme_few_labels_and_ensemble_docs_commands_run(tiny_bert, rt_csv, tmp_path, monkeypatch, capsys):
    """README's Few labels block, then docs/ensembles.md on the ensemble its `--seeds 3` line built."""
    monkeypatch.chdir(tmp_path)
    config = tiny_config(tiny_bert, rt_csv, tmp_path)
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(config))
    runs = tmp_path / "runs"
    for args in _commands(ROOT / "README.md", "Few labels"):
        if args[0] == "train":
            _run(capsys, [*args, *QUICK])
            _check_run(_newest_run(runs), args)
        else:
            args = [str(_newest_run(runs)) if a.startswith("runs/") else a for a in args]
            out = _run(capsys, args)
            assert "typos (rate 0.1): accuracy" in out and "synonyms (rate 0.1): accuracy" in out

    members = sorted(str(p) for p in runs.glob("test-seed*"))
    model = ["model.name=" + str(tiny_bert), "data.dataset=null", f"data.train_file={rt_csv}"]
    for args in _commands(ROOT / "docs" / "ensembles.md"):
        if args[:2] == ["train", "configs/quickstart.yaml"]:
            continue  # the --seeds line ran above, on the README's config
        if args[0] == "serve":
            continue  # serving an ensemble: tests/test_ensembles.py checks what the server loads
        if args[0] == "ensemble":
            options = [a for a in args[1:] if a != "RUN" and not a.startswith("runs/quickstart-seed")]
            args = ["ensemble", *members[: args.count("RUN") or 2], *options]
        args = [a if not a.startswith("distill.keep_layers") else "distill.keep_layers=[0]" for a in args]
        args = [str(rt_csv) if a == "labelled.csv" else a for a in args]
        _run(capsys, [*args, *QUICK, *model] if args[0] == "distill" else args)
    assert (tmp_path / "runs" / "quickstart-ensemble" / "export-onnx-int8" / "members").is_dir()
    meta = json.loads((tmp_path / "runs" / "my-ensemble" / "model" / "tuneforge.json").read_text())
    assert meta["ensemble"]["combine"] == "mean" and len(meta["ensemble"]["members"]) == 3


def _check_run(run: Path, args: list[str]) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    if any(a.startswith("data.augment") for a in args):
        assert metrics["augmentation"]["items_augmented"] > 0
    if "train.adversarial.method=fgm" in args:
        assert metrics["adversarial"]["method"] == "fgm"
    if "method.name=adapter" in args:
        assert (run / "model" / "bottleneck_adapters.safetensors").is_file()
    if "--seeds" in args:
        meta = json.loads((run / "model" / "tuneforge.json").read_text())
        assert len(meta["ensemble"]["members"]) == 3


def test_low_data_doc_configs_and_commands_run(tiny_bert, tiny_llama, rt_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    doc = ROOT / "docs" / "low_data.md"
    for block in _yaml_blocks(doc):  # each documented section trains as written
        config = tiny_config(tiny_bert, rt_csv, tmp_path)
        for section, values in block.items():
            config[section] = config.get(section, {}) | values
        (tmp_path / "block.yaml").write_text(yaml.safe_dump(config))
        _run(capsys, ["train", "block.yaml", *QUICK])

    lines = rt_csv.read_text(encoding="utf-8").splitlines()
    (tmp_path / "reviews.csv").write_text("\n".join(lines[:21] + lines[-20:]) + "\n", encoding="utf-8")
    (tmp_path / "reviews.yaml").write_text(yaml.safe_dump(tiny_config(tiny_bert, rt_csv, tmp_path)))
    for args in _commands(doc):
        if args[0] == "paraphrase":  # a random tiny Llama stands in for smollm2-135m (4 s per text here)
            args = [args[0], str(tiny_llama), *args[2:], "--max-new-tokens", "8"]
        if args[0] == "train":
            args = [*args, *QUICK]
        args = [str(_newest_run(tmp_path / "runs")) if a.startswith("runs/") else a for a in args]
        if "--data" in args:
            args[args.index("--data") + 1] = str(rt_csv)
        _run(capsys, args)
    paraphrased = (tmp_path / "reviews_paraphrased.csv").read_text(encoding="utf-8-sig").splitlines()
    assert paraphrased[0] == "text,label,paraphrase" and len(paraphrased) == 41
