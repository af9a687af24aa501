"""Training techniques from the config: data.augment, train.adversarial (FGM/PGD), data.paraphrase_column, and
`tuneforge eval --perturb`, for text and token classification."""

import csv
import json
import random

import pytest
import torch
from safetensors.torch import load_file

import tuneforge
from tests.conftest import tiny_config
from tuneforge.cli.app import main
from tuneforge.config import AdversarialConfig, AugmentConfig, load_config
from tuneforge.data.splits import load_splits
from tuneforge.data.tagging import Entity, TaggedText, entity_tags, words_for
from tuneforge.errors import ConfigError, DataError
from tuneforge.extensions import FitState
from tuneforge.techniques.adversarial import AdversarialTraining
from tuneforge.techniques.augmentation import Augmentation

# --------------------------------------------------------------------------- adversarial training


def _state(model, loss_fn) -> FitState:
    from accelerate import Accelerator

    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    config = load_config(None)
    return FitState(model, optimizer, None, None, config, Accelerator(cpu=True), loss_fn, 1)


def _batch(tiny_bert, rt_rows) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    batch = tokenizer([r["text"] for r in rt_rows[:6]], padding=True, truncation=True, max_length=32,
                      return_tensors="pt")
    return dict(batch) | {"labels": torch.tensor([0, 1, 0, 1, 0, 1])}


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_the_perturbation_has_its_size_and_raises_the_loss(method, tiny_bert, rt_rows):
    """What FGM/PGD add is a gradient step on the input embeddings of the set size, and it makes the loss worse."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).eval()
    for p in model.bert.embeddings.parameters():  # frozen embeddings (LoRA, adapters): the output still moves
        p.requires_grad_(False)
    batch = _batch(tiny_bert, rt_rows)

    def loss_fn(m, b):
        logits = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        return torch.nn.functional.cross_entropy(logits, b["labels"])

    settings = AdversarialConfig(method=method, epsilon=0.5, steps=3, alpha=0.2)
    extension, state = AdversarialTraining(settings), _state(model, loss_fn)
    extension.fit_start(state)
    extension.transform_batch(state, batch)
    clean = loss_fn(model, batch)
    clean.backward()
    clean_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    gradient = extension.clean.grad.detach()

    sizes, losses = [], []
    original = extension.loss_with

    def spy(state, batch, delta):  # every perturbation the extension tries, and its loss
        sizes.append(delta.detach().flatten(1).norm(dim=1))
        losses.append(original(state, batch, delta).detach())
        return original(state, batch, delta)

    extension.loss_with = spy
    assert gradient.abs().sum() > 0  # the clean forward's embedding output kept its gradient
    own = extension.clean.detach().flatten(1).norm(dim=1)  # each example's embedding norm: sizes are shares of it
    extension.after_backward(state, batch)
    final = sizes[-1] / own
    if method == "fgm":
        assert torch.allclose(final, torch.full_like(final, 0.5), atol=1e-4)
    else:
        assert len(sizes) == 3 and (final <= 0.5 + 1e-4).all() and (final > 0.2).all()
    assert losses[-1] > clean.detach()  # the perturbation points uphill
    changed = [n for n, g in clean_grads.items() if not torch.equal(g, dict(model.named_parameters())[n].grad)]
    assert changed, "the adversarial backward added no gradient"


def test_a_model_without_input_embeddings_is_refused():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ConfigError, match="no input-embedding layer"):
        AdversarialTraining(AdversarialConfig(method="fgm")).fit_start(_state(model, None))


# --------------------------------------------------------------------------- one run with every technique


def test_an_augmented_adversarial_run_resumes_exactly_and_reports_both(tiny_bert, tmp_path, rt_csv):
    """Stopped at step 4 of 8 and resumed: the same adapter as a run never stopped (augmentation is a function of
    (seed, epoch, row), FGM draws nothing); the report shows what augmentation did and what FGM cost."""
    config = tiny_config(tiny_bert, rt_csv, tmp_path, method={"name": "lora", "r": 4},
                         data={"augment": {"synonym": 0.2, "swap": 0.1, "delete": 0.1, "probability": 1.0}},
                         train={"max_steps": 8, "lr": 3e-3, "adversarial": {"method": "fgm", "epsilon": 0.05},
                                "checkpoint": {"every": 4, "keep_last": 3}},
                         eval={"every": 4})
    config["deterministic"] = True
    whole = tuneforge.train(config)
    uninterrupted = load_file(whole.dir / "model" / "adapter_model.safetensors")
    resumed = tuneforge.train(config, resume=whole.dir / "checkpoints" / "step-00000004")
    again = load_file(resumed.dir / "model" / "adapter_model.safetensors")
    assert uninterrupted.keys() == again.keys() and all(torch.equal(uninterrupted[k], again[k]) for k in again)

    metrics = json.loads((whole.dir / "metrics.json").read_text())
    seen, augmented = metrics["augmentation"]["items_seen"], metrics["augmentation"]["items_augmented"]
    assert seen == 8 * 16 and augmented > 0.75 * seen  # probability 1: all but the rare unchanged draw
    assert metrics["adversarial"]["cost_vs_plain_step"] > 1.2  # a second forward and backward per batch
    report = (whole.dir / "report.md").read_text()
    assert "## Augmentation" in report and "## Adversarial training" in report
    table = report.split("## Augmentation")[1].split("##")[0]
    assert table.count("\n| ") >= 4  # header + written/augmented pairs


def test_augmented_text_differs_per_epoch_and_repeats_exactly(rt_rows):
    from tuneforge.data.readers import Example

    extension = Augmentation(AugmentConfig(synonym=0.2, swap=0.1, probability=1.0), seed=5)
    extension.recipe_start(None)
    row = Example(rt_rows[3]["text"], "x", "a.csv:2")
    epochs = [extension.variant(row, 3, epoch) for epoch in range(4)]
    assert len({v.text for v in epochs if v is not None}) >= 3  # new variants each epoch
    assert extension.variant(row, 3, 1) == epochs[1]  # a pure function of (seed, epoch, row)


# --------------------------------------------------------------------------- token classification


SENTENCES = [("张三在北京的清华大学读书，他很喜欢这座城市。", [("张三", "PER"), ("北京", "LOC"), ("清华大学", "ORG")]),
             ("Angela Merkel visited the Microsoft offices in Seattle last week .",
              [("Angela Merkel", "PER"), ("Microsoft", "ORG"), ("Seattle", "LOC")])]


def _tagged(text: str, spans: list[tuple[str, str]]) -> TaggedText:
    entities = tuple(Entity(text.index(s), text.index(s) + len(s), kind) for s, kind in spans)
    return TaggedText(text, entities, "test", words_for(text, entities))


@pytest.mark.parametrize("model", ["gemma3-270m", "minilm-l6"])
def test_augmented_ner_batches_keep_every_entity_under_its_tags(model):
    """What the model trains on after augmentation: the tokens under B-/I- tags spell the original entities."""
    from transformers import AutoTokenizer

    from tuneforge.assets import resolve_model
    from tuneforge.tasks.token_classification.encoding import WindowDataset, WordTokenizer
    from tuneforge.tasks.token_classification.inference import Tagging
    from tuneforge.tasks.token_classification.recipe import batch_remaker, bio_tags

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model))
    rows = [_tagged(text, spans) for text, spans in SENTENCES if model == "gemma3-270m" or text.isascii()]
    tags = bio_tags(["LOC", "ORG", "PER"])
    tagging = Tagging(WordTokenizer(tokenizer), tags, 128, 16)
    windows = [w for doc in tagging.windows([(r.text, r.words) for r in rows], [entity_tags(r) for r in rows])
               for w in doc]
    remake = batch_remaker(rows, WindowDataset(windows), tagging, tokenizer.pad_token_id or 0)
    extension = Augmentation(AugmentConfig(synonym=0.3, insert=0.2, swap=0.2, delete=0.1, probability=1.0), seed=1)
    extension.recipe_start(None)
    index = torch.arange(len(rows))
    for epoch in range(6):
        batch = remake({"index": index}, lambda i, row, epoch=epoch: extension.variant(row, i, epoch))
        for b, row in enumerate(rows):
            spelled = _entities_in_batch(batch, b, tags, tokenizer)
            assert spelled == [(row.text[e.start:e.end].replace(" ", "").lower(), e.type) for e in row.entities], epoch


def _entities_in_batch(batch: dict, b: int, tags: list[str], tokenizer) -> list[tuple[str, str]]:
    ids, positions = batch["input_ids"][b].tolist(), batch["word_positions"][b].tolist()
    word_tags = batch["word_tags"][b].tolist()
    words = int(batch["word_mask"][b].sum())
    ends = positions[1:words] + [ids.index(tokenizer.pad_token_id) if tokenizer.pad_token_id in ids[positions[0]:]
                                 else len(ids)]
    found = []
    for w in range(words):
        tag = tags[word_tags[w]]
        piece = tokenizer.decode(ids[positions[w]:ends[w]], skip_special_tokens=True).replace(" ", "").lower()
        if tag.startswith("B-"):
            found.append([piece, tag[2:]])
        elif tag.startswith("I-"):
            found[-1][0] += piece
    return [(text, kind) for text, kind in found]


# --------------------------------------------------------------------------- paraphrases


def test_paraphrases_join_only_the_training_rows(tmp_path, rt_rows):
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "paraphrase"])
        for i, row in enumerate(rt_rows[:200]):
            writer.writerow([row["text"], row["label"], f"in other words, {row['text']}" if i % 2 == 0 else ""])
    config = load_config(None, [f"data.train_file={path}", "data.paraphrase_column=paraphrase"])
    splits = load_splits(config.data, config.seed)
    originals = [e for e in splits.train if not e.source.endswith("(paraphrase)")]
    added = [e for e in splits.train if e.source.endswith("(paraphrase)")]
    even = {f"{path}:{i + 2}" for i in range(0, 200, 2)}  # line 2 holds row 0
    assert len(added) == sum(e.source in even for e in originals) > 0
    held_out = {e.text for e in splits.validation + splits.test}
    assert not any(e.text.removeprefix("in other words, ") in held_out for e in added)
    assert all(e.label == next(o.label for o in originals if o.source == e.source.split(" (")[0]) for e in added)
    assert any("paraphrases (column 'paraphrase') joined" in note for note in splits.notes)

    config = load_config(None, [f"data.train_file={path}", "data.paraphrase_column=rewrites"])
    with pytest.raises(DataError, match="no column 'rewrites'"):
        load_splits(config.data, config.seed)


# --------------------------------------------------------------------------- eval --perturb


def test_eval_perturb_scores_noisy_copies_beside_the_clean_score(trained_text_run, tmp_path, capsys):
    out = tmp_path / "robust"
    assert main(["eval", str(trained_text_run.dir), "--perturb", "typos,synonyms=0.3", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    clean = json.loads((trained_text_run.dir / "metrics.json").read_text())["test"]["accuracy"]
    assert metrics["accuracy"] == pytest.approx(clean)  # without --data: the run's own test split
    assert set(metrics["robustness"]) == {"typos", "synonyms"} and metrics["robustness"]["synonyms"]["rate"] == 0.3
    report = (out / "report.md").read_text()
    assert "## Robustness" in report and "typos (rate 0.1)" in report
    assert "typos (rate 0.1): accuracy" in capsys.readouterr().out

    assert main(["eval", str(trained_text_run.dir), "--perturb", "emoji"]) == 2
    assert "unknown perturbation 'emoji'" in capsys.readouterr().err


def test_perturbed_text_is_seeded_per_example():
    from tuneforge.tasks.robustness import perturb_items

    texts = ["the film is a gripping and beautiful story about friendship",
             "这部电影的故事情节非常精彩，演员的表演也很自然"]
    first, second = perturb_items(texts, "typos", 0.3), perturb_items(texts, "typos", 0.3)
    assert first == second and all(a != b for a, b in zip(texts, first, strict=True))
    assert random.Random("typos/0").random() == random.Random("typos/0").random()
