"""The command line as a user meets it: every mistake gets exit code 2 and a message naming the problem."""

import csv
import subprocess
import sys

import pytest

from tuneforge.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write_config(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for command in ("train", "quickstart", "predict", "eval", "export", "init", "list"):
        assert command in out


@pytest.mark.parametrize("what,name", [("models", "minilm-l6"), ("models", "smollm2-135m"),
                                       ("models", "efficientnet-lite0"), ("datasets", "rt-sentences"),
                                       ("methods", "lora"), ("methods", "topk")])
def test_list(capsys, what, name):
    code, out, _ = run_cli(capsys, "list", what)
    assert code == 0 and name in out


def test_config_keys_documented(capsys):
    code, out, _ = run_cli(capsys, "config")
    assert code == 0 and "train.lr" in out and "method.r" in out


def test_config_typo(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", write_config(tmp_path, "trian:\n  lr: 1\n"))
    assert code == 2 and "c.yaml" in err and "'trian'" in err and "did you mean 'train'" in err
    assert "Traceback" not in err


def test_override_wrong_type(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", write_config(tmp_path, "name: x\n"), "train.batch_size=many")
    assert code == 2 and "train.batch_size: expected an integer" in err


@pytest.mark.parametrize("args", [["--resume", "somewhere", "train.batch_size=many"],
                                  ["--resume-force", "train.batch_size=many"],
                                  ["train.batch_size=4", "--resume-force", "train.batch_size=many"]])
def test_overrides_after_an_option(capsys, tmp_path, args):
    # argparse alone leaves key=value after an option unclaimed; the last override still wins
    code, _, err = run_cli(capsys, "train", write_config(tmp_path, "name: x\n"), *args)
    assert code == 2 and "train.batch_size: expected an integer" in err


def test_stray_words_after_an_option_are_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", write_config(tmp_path, "name: x\n"), "--resume", "somewhere", "junk"])
    assert exit_info.value.code == 2 and "unrecognized arguments: junk" in capsys.readouterr().err


def test_unknown_model_suggests(capsys, tmp_path, rt_csv):
    cfg = write_config(tmp_path, f"model:\n  name: ./no-such-model\ndata:\n  dataset: null\n  train_file: {rt_csv}\n")
    code, _, err = run_cli(capsys, "train", cfg)
    assert code == 2 and "no-such-model" in err


def test_unknown_dataset_suggests(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", write_config(tmp_path, "data:\n  dataset: rt-sentence\n"))
    assert code == 2 and "did you mean 'rt-sentences'" in err


def test_missing_column_before_training(capsys, tmp_path, rt_csv):
    cfg = write_config(tmp_path, f"data:\n  dataset: null\n  train_file: {rt_csv}\n  text_column: review\n")
    code, _, err = run_cli(capsys, "train", cfg)
    assert code == 2 and "review" in err and "data.text_column" in err
    assert not (tmp_path / "runs").exists()


def test_bad_rows_listed_with_file_and_line(capsys, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"text,label\ngood movie,pos\n  ,pos\nan unquoted, comma,neg\nno label,\nfine,neg\n")
    cfg = write_config(tmp_path, f"data:\n  dataset: null\n  train_file: {path}\n")
    code, _, err = run_cli(capsys, "train", cfg)
    assert code == 2
    assert "bad.csv, line 3" in err and "empty text" in err
    assert "bad.csv, line 4" in err and "3 fields" in err
    assert "bad.csv, line 5" in err and "label" in err


def test_wrong_format_file(capsys, tmp_path):
    path = tmp_path / "data.parquet"
    path.write_text("text,label\nhello,pos\n")
    cfg = write_config(tmp_path, f"data:\n  dataset: null\n  train_file: {path}\n")
    code, _, err = run_cli(capsys, "train", cfg)
    assert code == 2 and "data.parquet" in err and "Parquet" in err


def test_predict_texts_and_file(capsys, trained_text_run, tmp_path):
    code, out, _ = run_cli(capsys, "predict", str(trained_text_run.dir), "a wonderful film", "a dreadful bore")
    assert code == 0 and len(out.strip().splitlines()) == 2
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1,a wonderful film\n2,a dreadful bore\n3,\"quoted, with comma\"\n")
    out_path = tmp_path / "preds.csv"
    code, _, _ = run_cli(capsys, "predict", str(trained_text_run.dir), "--file", str(source), "--out", str(out_path))
    rows = list(csv.DictReader(out_path.open(encoding="utf-8-sig")))  # with a BOM, for Excel
    assert code == 0 and len(rows) == 3
    assert {"id", "text", "predicted_label", "prob_negative", "prob_positive"} <= set(rows[0])
    assert rows[2]["text"] == "quoted, with comma"


def test_predict_never_overwrites(capsys, trained_text_run, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text\nfine\n")
    code, _, err = run_cli(capsys, "predict", str(trained_text_run.dir), "--file", str(source), "--out", str(source))
    assert code == 2 and "input file" in err
    assert source.read_text() == "text\nfine\n"
    existing = tmp_path / "old.csv"
    existing.write_text("keep me")
    code, _, err = run_cli(capsys, "predict", str(trained_text_run.dir), "--file", str(source), "--out", str(existing))
    assert code == 2 and "--force" in err and existing.read_text() == "keep me"


def test_predict_parquet_file(capsys, trained_text_run, tmp_path):
    import pandas as pd

    source = tmp_path / "in.parquet"
    pd.DataFrame({"text": ["a wonderful film", "a dreadful bore"], "id": [1, 2]}).to_parquet(source)
    out = tmp_path / "p.csv"
    code, _, _ = run_cli(capsys, "predict", str(trained_text_run.dir), "--file", str(source), "--out", str(out))
    assert code == 0 and len(list(csv.DictReader(out.open()))) == 2


def test_predict_errors(capsys, trained_text_run, tmp_path):
    code, _, err = run_cli(capsys, "predict", str(tmp_path / "nope"), "text")
    assert code == 2 and "no such run directory" in err
    source = tmp_path / "in.csv"
    source.write_text("body\nhello\n")
    code, _, err = run_cli(capsys, "predict", str(trained_text_run.dir), "--file", str(source))
    assert code == 2 and "no column 'text'" in err


def test_eval_on_labelled_data_matches_training_report(capsys, trained_text_run, tmp_path):
    import json

    from tuneforge.config import load_config
    from tuneforge.data.splits import load_splits

    config = load_config(trained_text_run.dir / "config.yaml")
    test = load_splits(config.data, config.seed).test
    path = tmp_path / "test.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows((e.text, e.label) for e in test)
    out_dir = tmp_path / "eval"
    code, out, _ = run_cli(capsys, "eval", str(trained_text_run.dir), "--data", str(path), "--out", str(out_dir))
    assert code == 0 and "accuracy" in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["confusion_matrix"] == trained_text_run.metrics["test"]["confusion_matrix"]
    assert (out_dir / "report.md").is_file() and (out_dir / "confusion_matrix.png").is_file()
    code, _, err = run_cli(capsys, "eval", str(trained_text_run.dir), "--data", str(path), "--out", str(out_dir))
    assert code == 2 and "--force" in err  # an earlier report is never silently replaced


def test_eval_unseen_label(capsys, trained_text_run, tmp_path):
    path = tmp_path / "new.csv"
    path.write_text("text,label\nfine,positive\nmeh,neutral\n")
    code, _, err = run_cli(capsys, "eval", str(trained_text_run.dir), "--data", str(path))
    assert code == 2 and "neutral" in err and "new.csv" in err


def test_commands_refuse_a_run_of_the_wrong_task(capsys, trained_text_run, tmp_path):
    code, _, err = run_cli(capsys, "caption", str(trained_text_run.dir), str(tmp_path / "cat.png"))
    assert code == 2 and "is a text_classification run; caption and ask need a Frozen run" in err
    code, _, err = run_cli(capsys, "predict", str(trained_text_run.dir), "--dir", str(tmp_path))
    assert code == 2 and "--dir is for image runs" in err
    code, _, err = run_cli(capsys, "eval", str(trained_text_run.dir))
    assert code == 2 and "--data is required" in err


def test_export_merge_needs_flag(capsys, trained_text_run):
    code, _, err = run_cli(capsys, "export", str(trained_text_run.dir))
    assert code == 2 and "--merge" in err


def test_init_writes_a_config_that_trains(capsys, tmp_path, rt_csv):
    out = tmp_path / "starter.yaml"
    code, _, _ = run_cli(capsys, "init", "--data", str(rt_csv), "--out", str(out))
    assert code == 0
    from tuneforge.config import load_config

    config = load_config(out)
    assert (config.data.text_column, config.data.label_column) == ("text", "label")
    assert config.data.train_file == str(rt_csv)
    code, _, err = run_cli(capsys, "init", "--data", str(rt_csv), "--out", str(out))
    assert code == 2 and "exists" in err  # never overwrite a user's file silently


def test_resolved_config_reruns_from_cli(capsys, trained_text_run, tmp_path):
    code, out, _ = run_cli(capsys, "train", str(trained_text_run.dir / "config.yaml"), "train.max_steps=2")
    assert code == 0
    from pathlib import Path

    from tuneforge.config import load_config

    new_dir = Path(next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("run dir")))
    assert new_dir != trained_text_run.dir
    assert f"next:\n  tuneforge predict {new_dir} " in out  # the task's next steps, indented
    rerun = load_config(new_dir / "config.yaml")
    assert rerun.train.max_steps == 2 and rerun.model == load_config(trained_text_run.dir / "config.yaml").model


def test_console_script_exit_code(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("train:\n  epoch: 1\n")
    result = subprocess.run([sys.executable, "-m", "tuneforge.cli", "train", str(bad)], capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert "did you mean 'epochs'" in result.stderr and "Traceback" not in result.stderr


def test_export_merge_gives_a_plain_transformers_model(capsys, trained_text_lora_run, tmp_path):
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification

    import tuneforge

    run = trained_text_lora_run
    out = tmp_path / "merged"
    code, _, _ = run_cli(capsys, "export", str(run.dir), "--merge", "--out", str(out))
    assert code == 0 and (out / "model.safetensors").is_file()
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert not any("lora" in name for name, _ in plain.named_parameters())
    assert plain.config.id2label == {0: "negative", 1: "positive"}
    model = tuneforge.load(run.dir)
    texts = ["a wonderful film", "a dreadful bore"]
    batch = model.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(plain(**batch).logits, -1).numpy()
    np.testing.assert_allclose(probs, model.predict_proba(texts), atol=1e-5)
