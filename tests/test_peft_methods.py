"""The PEFT method family end to end: train through tuneforge, save, reload (identical outputs), merge.

Run on both a classifier (tiny BERT) and a causal LM (tiny Llama), so every method is exercised where
it applies; AdaLoRA's rank allocator must actually reallocate ranks.
"""

import json

import numpy as np
import pytest
import torch

import tuneforge
from tests.conftest import tiny_config
from tuneforge.config import config_from_dict
from tuneforge.data.splits import load_splits
from tuneforge.data.text import TokenizedTexts, encode_targets, tokenize
from tuneforge.errors import ConfigError, RunError
from tuneforge.tasks.classification import LabelSpace, loss_from_probs
from tuneforge.tasks.language_models.recipe import _causal_nll, held_out_perplexity
from tuneforge.tasks.text_classification.recipe import predict_probs

METHODS = {
    "lora": {"name": "lora", "r": 4},
    "dora": {"name": "lora", "r": 4, "dora": True},
    "adalora": {"name": "adalora", "init_r": 6, "target_r": 2, "delta_t": 1},
    "ia3": {"name": "ia3"},
    "prefix_tuning": {"name": "prefix_tuning", "num_virtual_tokens": 4},
    "prompt_tuning": {"name": "prompt_tuning", "num_virtual_tokens": 4},
}
MERGEABLE = {"lora", "dora", "adalora", "ia3"}


@pytest.mark.parametrize("key", list(METHODS))
def test_classifier_saves_reloads_and_merges(key, tiny_bert, rt_csv, tmp_path):
    config = tiny_config(tiny_bert, rt_csv, tmp_path, method=METHODS[key], train={"max_steps": 8, "lr": 1e-2})
    config["method"] = METHODS[key]
    run = tuneforge.train(config)
    test = load_splits(run.config.data, run.config.seed).test
    model = tuneforge.load(run.dir)
    probs = model.predict_proba([e.text for e in test])
    targets = encode_targets([e.label for e in test], model.labels.names, False)
    reloaded_loss = loss_from_probs(probs, targets, LabelSpace(model.labels.names, False))
    assert reloaded_loss == pytest.approx(run.metrics["test"]["loss"], abs=1e-5)  # identical outputs
    assert run.metrics["trainable_parameters"] < run.metrics["total_parameters"] / 5
    if key in MERGEABLE:
        merged = model.merged()
        ids = TokenizedTexts(tokenize([e.text for e in test], model.tokenizer, 32), None)
        np.testing.assert_allclose(predict_probs(merged, ids, 0, 64, False), probs, atol=1e-4)
    else:
        with pytest.raises(RunError, match="cannot be merged"):
            model.merged()
    if key == "adalora":
        assert_ranks_were_reallocated(run.dir / "model", initial=6)


@pytest.mark.parametrize("key", list(METHODS))
def test_causal_lm_saves_reloads_and_merges(key, tiny_llama, corpus, tmp_path):
    config = tiny_config(tiny_llama, corpus, tmp_path, task="causal_lm", method=METHODS[key],
                         train={"max_steps": 8, "lr": 1e-2, "batch_size": 8}, lm={"eval_blocks": 16})
    config["method"] = METHODS[key]
    run = tuneforge.train(config)
    model = tuneforge.load(run.dir)
    loss = validation_loss(model.model, run)
    assert loss == pytest.approx(run.metrics["validation"]["loss"], abs=1e-5)
    if key in MERGEABLE:
        assert validation_loss(model.merged(), run) == pytest.approx(loss, abs=1e-4)
    if key == "adalora":
        assert_ranks_were_reallocated(run.dir / "model", initial=6)


def validation_loss(model, run) -> float:
    from tuneforge.tasks.language_models.causal_lm import prepare

    config = config_from_dict(json.loads(json.dumps(run.config.to_dict())))
    data = prepare(config, tuneforge.load(run.dir).tokenizer)
    return held_out_perplexity(model, data.validation, data.collate_eval, 8, _causal_nll)["loss"]


def assert_ranks_were_reallocated(folder, initial: int) -> None:
    """PEFT records the allocated ranks as a rank_pattern; a budget below init_r must have cut some."""
    pattern = json.loads((folder / "adapter_config.json").read_text())["rank_pattern"]
    assert pattern, "update_and_allocate never ran: no rank pattern"
    ranks = [sum(mask) for mask in pattern.values()]
    assert min(ranks) < initial and sum(ranks) < initial * len(ranks)


def test_prompt_methods_refuse_masked_lm(tiny_bert, corpus, tmp_path):
    config = tiny_config(tiny_bert, corpus, tmp_path, task="masked_lm", train={"max_steps": 2})
    config["method"] = {"name": "prefix_tuning"}
    with pytest.raises(ConfigError, match="not masked_lm"):
        tuneforge.train(config)


def test_adalora_needs_steps_to_allocate_in(tiny_bert, rt_csv, tmp_path):
    config = tiny_config(tiny_bert, rt_csv, tmp_path, train={"max_steps": 2})
    config["method"] = {"name": "adalora"}
    with pytest.raises(ConfigError, match="at least 4 optimizer steps"):
        tuneforge.train(config)


def test_adalora_regulariser_is_part_of_the_loss(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    from tuneforge.config import AdaLoraConfig
    from tuneforge.methods import Target, apply_method, method_extensions

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    model = apply_method(model, AdaLoraConfig(init_r=4, target_r=2), Target(heads=("classifier",), total_steps=20))
    (allocation,) = method_extensions(model)
    task_loss = torch.tensor(1.0)
    penalty = allocation.loss_terms(None, {}, task_loss) - task_loss
    assert penalty.item() > 0 and penalty.requires_grad  # random A/B factors are far from orthogonal
    assert "after_optimizer_step" in type(allocation).__dict__  # the rank allocator runs after each step
    with torch.no_grad():
        assert method_extensions(torch.nn.Linear(2, 2)) == []


def test_adalora_resumes_exactly_with_its_rank_allocator(tiny_bert, rt_csv, tmp_path):
    """Stopped after step 6 of 12 (ranks being reallocated), resumed: the same adapter and rank pattern as the
    uninterrupted run. Without the allocator's importance averages in the checkpoint, they would differ."""
    import shutil

    from safetensors.torch import load_file

    config = tiny_config(tiny_bert, rt_csv, tmp_path, train={"max_steps": 12, "lr": 1e-2,
                                                             "checkpoint": {"every": 1, "keep_last": 20}})
    config["method"] = METHODS["adalora"]
    config["deterministic"] = True
    reference = tuneforge.train(config)
    crashed = tmp_path / "crashed"  # the same run as if killed right after the step-6 checkpoint
    shutil.copytree(reference.dir, crashed, ignore=shutil.ignore_patterns("model", "step-0000000[7-9]",
                                                                          "step-0000001*"))
    assert (crashed / "checkpoints" / "step-00000006" / "extensions.pt").is_file()
    resumed = tuneforge.train(config, resume=crashed / "checkpoints" / "step-00000006")
    assert resumed.dir == crashed
    before = load_file(reference.model_dir / "adapter_model.safetensors")
    after = load_file(resumed.model_dir / "adapter_model.safetensors")
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), f"{name} differs after resume"
    pattern = json.loads((reference.model_dir / "adapter_config.json").read_text())["rank_pattern"]
    assert pattern == json.loads((resumed.model_dir / "adapter_config.json").read_text())["rank_pattern"]
    assert_ranks_were_reallocated(resumed.model_dir, initial=6)
    # the importance averages carry the history before the resume (step 9: the last step before they are reset)
    states = [torch.load(d / "checkpoints" / "step-00000009" / "extensions.pt", weights_only=True)["adalora"]
              for d in (reference.dir, crashed)]
    for key in ("exp_avg_ipt", "exp_avg_unc"):
        assert states[0][key].keys() == states[1][key].keys() and states[0][key]
        for name, tensor in states[0][key].items():
            assert torch.equal(tensor, states[1][key][name]), f"{key} {name} differs after resume"
