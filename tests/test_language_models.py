"""Language-model tasks end to end on tiny models: pretraining (causal and masked), SFT, generation, prompting."""

import json

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

import tuneforge
from tests.conftest import tiny_config
from tuneforge.cli import main
from tuneforge.errors import ConfigError
from tuneforge.tasks.language_models.generator import GenerationSettings, LanguageModel


@pytest.fixture(scope="module")
def causal_run(tiny_llama, corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("causal")
    return tuneforge.train(tiny_config(tiny_llama, corpus, tmp, task="causal_lm",
                                       train={"max_steps": 30, "lr": 3e-3, "batch_size": 8}))


def test_causal_lm_lowers_held_out_perplexity(causal_run):
    validation = causal_run.metrics["validation"]
    assert validation["perplexity"] < 0.8 * validation["perplexity_before"]
    assert causal_run.metrics["test"]["perplexity"] < causal_run.metrics["test"]["perplexity_before"]
    report = causal_run.report.read_text()
    assert "perplexity before" in report and "training_curves.png" in report


def test_causal_lm_folder_loads_with_plain_transformers(causal_run):
    model = AutoModelForCausalLM.from_pretrained(causal_run.model_dir)  # method full: a plain HF folder
    assert model.config.num_hidden_layers == 2


def test_generation_streams_stops_and_limits(causal_run):
    model = tuneforge.load(causal_run.dir)
    pieces = []
    result = model.generate("The film is", GenerationSettings(max_new_tokens=12), on_text=pieces.append)
    assert "".join(pieces) == result.text and result.new_tokens == 12 and result.finish_reason == "length"
    again = model.generate("The film is", max_new_tokens=12)
    assert again.text == result.text  # greedy is deterministic
    word = result.text.split()[1] if len(result.text.split()) > 1 else result.text.strip()[:2]
    stopped = model.generate("The film is", max_new_tokens=12, stop=[word])
    assert word not in stopped.text and stopped.finish_reason == "stop"
    sampled = model.generate("The film is", max_new_tokens=5, temperature=0.9, top_p=0.9, top_k=20, seed=1)
    assert sampled.new_tokens <= 5
    with pytest.raises(ConfigError):
        model.generate("x", max_new_tokens=0)


def test_generate_command_and_prompt_file(causal_run, tmp_path, capsys):
    assert main(["generate", str(causal_run.dir), "The film is", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("The film is")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("A great\nA terrible\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["generate", str(causal_run.dir), "--file", str(prompts), "--out", str(out),
                 "--max-new-tokens", "4"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["A great", "A terrible"] and all(r["completion_tokens"] == 4 for r in rows)
    assert main(["generate", str(causal_run.dir), "--file", str(prompts), "--out", str(out)]) == 2  # no overwrite


def test_masked_lm_output_starts_a_classifier(tiny_bert, corpus, rt_csv, tmp_path):
    pretrained = tuneforge.train(tiny_config(tiny_bert, corpus, tmp_path, task="masked_lm",
                                             train={"max_steps": 20, "lr": 3e-3, "batch_size": 8}))
    validation = pretrained.metrics["validation"]
    assert validation["perplexity"] < validation["perplexity_before"]
    classifier = tuneforge.train(tiny_config(pretrained.model_dir, rt_csv, tmp_path, train={"max_steps": 4}))
    predictions = tuneforge.load(classifier.dir).predict(["a warm, funny film"])
    assert predictions[0].label in ("positive", "negative")
    AutoModelForSequenceClassification.from_pretrained(classifier.model_dir)


def test_sft_learns_only_replies_and_chats(tiny_llama, tmp_path, capsys):
    rows = [{"instruction": f"Repeat the number {i}.", "output": f"Number: {i}"} for i in range(60)]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run = tuneforge.train(tiny_config(tiny_llama, data, tmp_path, task="sft",
                                      data={"max_length": 64}, train={"max_steps": 10, "lr": 3e-3}))
    assert run.metrics["validation"]["loss"] < run.metrics["validation"]["loss_before"]
    assert "loss covers assistant turns only" in run.report.read_text()
    model = tuneforge.load(run.dir)
    assert isinstance(model, LanguageModel)
    reply = model.generate([{"role": "user", "content": "Repeat the number 3."}], max_new_tokens=4)
    assert reply.new_tokens <= 4
    assert main(["generate", str(run.dir), "--chat", "Repeat the number 5.", "--max-new-tokens", "3"]) == 0


def test_lm_tasks_refuse_the_wrong_model_and_metric(tiny_llama, corpus, tmp_path):
    with pytest.raises(ConfigError, match="needs an encoder"):
        tuneforge.train(tiny_config("smollm2-135m", corpus, tmp_path, task="masked_lm"))
    with pytest.raises(ConfigError, match="not measured for causal_lm"):
        tuneforge.train(tiny_config(tiny_llama, corpus, tmp_path, task="causal_lm", eval={"metric": "accuracy"}))


def test_prompt_classification_reports_every_k(tiny_llama, rt_csv, tmp_path, capsys):
    config = tiny_config(tiny_llama, rt_csv, tmp_path, task="prompt_classification",
                         prompt={"eval_shots": [0, 1, 2], "shots": 1,
                                 "label_words": {"positive": "great", "negative": "bad"}})
    run = tuneforge.train(config)
    assert set(run.metrics["by_shots"]) == {"0", "1", "2"}
    # the headline is the k = prompt.shots evaluation, reported once in both places
    assert run.metrics["test"]["accuracy"] == run.metrics["by_shots"]["1"]["accuracy"]
    meta = json.loads((run.model_dir / "tuneforge.json").read_text())
    assert len(meta["demos"]) == 2 and {d["label"] for d in meta["demos"]} == {"positive", "negative"}
    assert main(["predict", str(run.dir), "a lovely film"]) == 0
    assert main(["eval", str(run.dir), "--data", str(rt_csv)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out
    eval_dirs = list(run.dir.glob("eval-*"))
    assert "in-context examples" in (eval_dirs[0] / "report.md").read_text()


def test_prompt_label_words_must_cover_the_classes(tiny_llama, rt_csv, tmp_path):
    config = tiny_config(tiny_llama, rt_csv, tmp_path, task="prompt_classification",
                         prompt={"label_words": {"positive": "great"}})
    with pytest.raises(ConfigError, match="missing \\['negative'\\]"):
        tuneforge.train(config)


def test_causal_lm_resumes_exactly_from_a_checkpoint(tiny_llama, corpus, tmp_path):
    from safetensors.torch import load_file

    config = tiny_config(tiny_llama, corpus, tmp_path, task="causal_lm",
                         train={"max_steps": 8, "lr": 3e-3, "batch_size": 8,
                                "checkpoint": {"every": 4, "keep_last": 3}})
    config["deterministic"] = True
    run = tuneforge.train(config)
    uninterrupted = load_file(run.model_dir / "model.safetensors")
    resumed = tuneforge.train(config, resume=run.dir / "checkpoints" / "step-00000004")
    assert resumed.dir == run.dir
    again = load_file(run.model_dir / "model.safetensors")
    assert all((uninterrupted[k] == again[k]).all() for k in uninterrupted)
    assert resumed.metrics["validation"]["loss"] == pytest.approx(run.metrics["validation"]["loss"], abs=1e-6)


def test_gradient_checkpointing_changes_memory_not_results(tiny_llama, corpus, tmp_path):
    runs = [tuneforge.train(tiny_config(tiny_llama, corpus, tmp_path / str(on), task="causal_lm",
                                        train={"max_steps": 4, "lr": 3e-3, "batch_size": 8,
                                               "gradient_checkpointing": on}))
            for on in (False, True)]
    losses = [run.metrics["validation"]["loss"] for run in runs]
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)


def test_eval_and_predict_on_a_language_model_run(causal_run, corpus, capsys):
    assert main(["eval", str(causal_run.dir), "--data", str(corpus)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("perplexity ") and "tokens of" in out
    assert main(["predict", str(causal_run.dir), "some text"]) == 2
    assert "generates text" in capsys.readouterr().err


def test_one_text_file_with_a_given_test_file(tiny_llama, rt_rows, tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(" ".join(row["text"] for row in rt_rows[:300]), encoding="utf-8")
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(" ".join(row["text"] for row in rt_rows[300:330]), encoding="utf-8")
    config = tiny_config(tiny_llama, book, tmp_path, task="causal_lm", train={"max_steps": 2, "batch_size": 8})
    config["data"]["test_file"] = str(held_out)
    run = tuneforge.train(config)
    assert run.metrics["counts"]["validation blocks"] >= 1  # carved from the book's blocks
    assert "seeded block split" in run.report.read_text()
    from tuneforge.data.lm import pack_causal

    tokens = len(pack_causal([held_out.read_text()], tuneforge.load(run.dir).tokenizer, 32).input_ids)
    assert run.metrics["counts"]["test blocks"] == tokens  # the given test file, nothing carved into it


def test_masked_lm_adapter_exports_a_plain_model(tiny_bert, corpus, tmp_path):
    from transformers import AutoModelForMaskedLM

    config = tiny_config(tiny_bert, corpus, tmp_path, task="masked_lm", train={"max_steps": 2})
    config["method"] = {"name": "lora", "r": 2}
    run = tuneforge.train(config)
    assert main(["export", str(run.dir), "--merge"]) == 0
    AutoModelForMaskedLM.from_pretrained(run.dir / "merged")
    assert main(["predict", str(run.dir), "text"]) == 2
