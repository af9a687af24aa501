"""Frozen end to end on the real smollm2-135m (frozen) and EfficientNet-Lite0, with real twemoji images.

The recipe tests train for 40 steps on flags vs faces: enough for the visual prefix to tell
the frozen LM which word to write, which a blind run cannot do. Sequence mechanics (slots, padding,
the KV cache) are checked on a tiny random Llama, where exact equalities are cheap.
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image as PILImage

import tuneforge
from tests.test_cli import run_cli
from tuneforge.config import config_from_dict
from tuneforge.errors import ConfigError, DataError
from tuneforge.tasks.frozen.evaluation import binding_episode, first_word, wilson_interval
from tuneforge.tasks.frozen.model import FrozenModel, Image, build_vision, load_language_model, sequence_format
from tuneforge.tasks.frozen.network import collate


def frozen_config(tmp_path, **sections) -> dict:
    config = {
        "task": "frozen",
        "name": "fz",
        "model": {"name": "smollm2-135m"},
        "method": {"name": "full"},
        "data": {"dataset": None, "split": [0.75, 0.25, 0.0]},
        "frozen": {"binding_data": None},
        "image": {"size": 32, "resize": 32, "random_resized_crop": False, "hflip": False},
        "train": {"max_steps": 40, "batch_size": 12, "lr": 2e-3, "log_every": 5, "warmup_ratio": 0.0},
        "eval": {"batch_size": 12, "every": 40},
        "output": {"dir": str(tmp_path / "runs"), "progress": False, "tensorboard": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    return config


@pytest.fixture(scope="module")
def twemoji_rows():
    from tuneforge.assets.datasets import dataset_folder

    folder = dataset_folder("twemoji")
    rows = [json.loads(line) for line in (folder / "captions.jsonl").read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row["image"] = str(folder / row["image"])
    return rows


@pytest.fixture(scope="module")
def flags_and_faces(tmp_path_factory, twemoji_rows):
    """80 real emoji: 40 country flags captioned 'flag', 40 smileys captioned 'face'."""
    flags = [r for r in twemoji_rows if r["subcategory"] == "country-flag"][::6][:40]
    faces = [r for r in twemoji_rows if r["category"] == "Smileys & Emotion" and r["subcategory"].startswith("face")]
    rows = [(r["image"], "flag") for r in flags] + [(r["image"], "face") for r in faces[:40]]
    path = tmp_path_factory.mktemp("flags-faces") / "pairs.csv"
    path.write_text("image,text\n" + "".join(f"{image},{text}\n" for image, text in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, flags_and_faces):
    root = tmp_path_factory.mktemp("frozen-runs")
    config = frozen_config(root, data={"train_file": str(flags_and_faces)})
    seeing = tuneforge.train(config)
    blind = tuneforge.train(frozen_config(root, name="fz-blind", data={"train_file": str(flags_and_faces)},
                                          frozen={"blind": True, "binding_data": None}))
    return seeing, blind


# --------------------------------------------------------------------------- the recipe on real models


def test_prefix_lets_the_frozen_lm_name_what_it_sees(trained, flags_and_faces):
    seeing, blind = trained
    model = tuneforge.load(seeing.dir)
    config = config_from_dict(frozen_config(seeing.dir, data={"train_file": str(flags_and_faces)}))
    from tuneforge.data.captions import load_image_text_splits

    held_out = load_image_text_splits(config.data, config.seed, answers=False).validation
    captions = model.caption([row.image for row in held_out])
    right = sum(first_word(c) == row.text for c, row in zip(captions, held_out, strict=True)) / len(held_out)
    assert right >= 0.8, captions  # chance 0.5: one word for every image
    # blind, the best is ln 2 per caption (which word?); seeing the image removes most of that
    assert seeing.metrics["validation"]["loss"] < 0.5 * blind.metrics["validation"]["loss"]


def test_language_model_weights_stay_bit_identical(trained):
    seeing, blind = trained
    for run in (seeing, blind):
        assert run.metrics["lm_sha256_before"] == run.metrics["lm_sha256_after"]
    assert seeing.metrics["trainable_parameters"] < 0.05 * seeing.metrics["total_parameters"]
    report = (seeing.dir / "report.md").read_text(encoding="utf-8")
    assert "bit-identical" in report and "sample_captions.png" in report
    assert (seeing.dir / "sample_captions.png").stat().st_size > 0


def test_finetune_lm_ablation_changes_the_lm_and_saves_it(tmp_path, flags_and_faces):
    run = tuneforge.train(frozen_config(tmp_path, data={"train_file": str(flags_and_faces)},
                                        frozen={"finetune_lm": True, "binding_data": None},
                                        train={"max_steps": 1, "batch_size": 4}, eval={"every": 1}))
    assert run.metrics["lm_sha256_before"] != run.metrics["lm_sha256_after"]
    assert (run.dir / "model" / "language_model" / "model.safetensors").is_file()
    reloaded = tuneforge.load(run.dir)
    assert reloaded.meta["finetune_lm"]


def test_caption_and_ask_commands(trained, twemoji_rows, tmp_path, capsys):
    seeing, _ = trained
    flag = next(r["image"] for r in twemoji_rows if r["text"] == "japan flag")
    code, out, _ = run_cli(capsys, "caption", str(seeing.dir), flag)
    assert code == 0 and out.startswith(flag) and first_word(out.split("\t")[1]) == "flag"
    code, out, _ = run_cli(capsys, "ask", str(seeing.dir), "--image", flag, "--text", "This is a")
    assert code == 0 and out.strip()
    code, _, err = run_cli(capsys, "ask", str(seeing.dir), "--text", "no image here")
    assert code == 2 and "--image" in err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    code, _, err = run_cli(capsys, "caption", str(seeing.dir), str(broken))
    assert code == 2 and "broken.png" in err


def test_python_generate_takes_interleaved_images_and_text(trained, twemoji_rows):
    seeing, _ = trained
    model = tuneforge.load(seeing.dir)
    images = [r["image"] for r in twemoji_rows if r["subcategory"] == "country-flag"][:3]
    reply = model.generate([tuneforge.Image(images[0]), "This is a dax.", Image(PILImage.open(images[1])),
                            "This is a blicket.", Image(images[2]), "Q: What is this? A: This is a"])
    assert isinstance(reply, str) and reply  # a continuation, not an empty string
    assert model.generate([Image(images[0])]) == model.caption([images[0]])[0] == "flag"  # trained on flags: 'flag'
    with pytest.raises(TypeError):
        model.generate([Image(images[0]), 42])


def test_eval_reports_blind_perplexity_and_binding(trained, twemoji_rows, tmp_path, capsys):
    seeing, blind = trained
    binding = tmp_path / "binding"
    for category in ("animal-bird", "food-vegetable"):
        (binding / category).mkdir(parents=True)
        for row in [r for r in twemoji_rows if r["subcategory"] == category][:4]:
            PILImage.open(row["image"]).save(binding / category / f"{len(list((binding / category).iterdir()))}.png")
    code, out, err = run_cli(capsys, "eval", str(seeing.dir), "--blind", str(blind.dir), "--binding", str(binding),
                              "--episodes", "6", "--out", str(tmp_path / "eval"))
    assert code == 0, err
    results = json.loads((tmp_path / "eval" / "eval.json").read_text())
    ppl = results["perplexity"]
    assert ppl["with images"]["perplexity"] < ppl["blind run"]["perplexity"]
    cells = [r for r in results["binding"]["rows"] if "accuracy" in r]
    assert cells and all(r["n"] == 6 and 0 <= r["ci_low"] <= r["accuracy"] <= r["ci_high"] <= 1 for r in cells)
    assert (tmp_path / "eval" / "binding.png").stat().st_size > 0
    code, _, err = run_cli(capsys, "eval", str(seeing.dir), "--out", str(tmp_path / "eval"))
    assert code == 2 and "--force" in err  # never overwrites a report unasked


# --------------------------------------------------------------------------- sequence mechanics (tiny Llama)


@pytest.fixture(scope="module")
def tiny_frozen(tiny_llama):
    from tuneforge.data.transforms import Preprocessing
    from tuneforge.tasks.frozen.network import VisualPrefixLM

    torch.manual_seed(0)
    tokenizer, lm = load_language_model(str(tiny_llama))
    vision = build_vision("efficientnet-lite0", 32, 2, lm.get_input_embeddings().embedding_dim, pretrained=False,
                          channels_last=False)
    model = VisualPrefixLM(vision, lm, 2)
    prep = Preprocessing(size=32, resize=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    return FrozenModel(model, tokenizer, prep, sequence_format(tokenizer, 2), {})


def _image(seed: int) -> PILImage.Image:
    return PILImage.fromarray(torch.randint(0, 255, (32, 32, 3), generator=torch.Generator().manual_seed(seed))
                              .numpy().astype("uint8"))


def test_images_land_in_their_slots_and_padding_changes_nothing(tiny_frozen):
    short = tiny_frozen.item([Image(_image(1)), "a cat"])
    long = tiny_frozen.item(["Look:", Image(_image(2)), "and", Image(_image(3)), "a much longer text here"])
    alone = collate([short], tiny_frozen.fmt)
    model = tiny_frozen.model.eval()
    embeds = model.embed(alone["input_ids"], alone["image_slots"], alone["pixel_values"])
    prefix = model.visual_prefix(alone["pixel_values"])[0]
    assert torch.equal(embeds[0, 1:3], prefix)  # right after the start token
    with torch.no_grad():
        reference = model.hidden_states(alone)[0, -1]
        for side in ("right", "left"):
            batch = collate([long, short], tiny_frozen.fmt, padding_side=side)
            assert batch["image_slots"].sum() == 3 * 2
            hidden = model.hidden_states(batch)
            last = hidden[1, -1] if side == "left" else hidden[1, alone["input_ids"].shape[1] - 1]
            torch.testing.assert_close(last, reference, atol=1e-5, rtol=1e-4)


def test_cached_greedy_equals_full_recomputation_also_left_padded(tiny_frozen):
    short = tiny_frozen.item([Image(_image(4)), "Once upon a"])
    long = tiny_frozen.item(["A much longer opening line, then", Image(_image(5)), "and so"])
    model = tiny_frozen.model.eval()
    together = model.greedy(collate([short, long], tiny_frozen.fmt, "left"), 6, stop_ids=[-1])
    for item, batched in zip([short, long], together, strict=True):
        pieces, slow = list(item["pieces"]), []
        with torch.no_grad():
            for _ in range(6):  # no cache, no padding: the whole sequence again for every token
                batch = collate([{"pieces": pieces, "pixel_values": item["pixel_values"]}], tiny_frozen.fmt)
                embeds = model.embed(batch["input_ids"], batch["image_slots"], batch["pixel_values"])
                token = int(model.lm(inputs_embeds=embeds).logits[0, -1].argmax())
                slow.append(token)
                pieces.append(("text", [token]))
        assert batched == slow


# --------------------------------------------------------------------------- data and config checks


def test_bad_pairs_are_listed_with_their_lines(tmp_path, twemoji_rows):
    good = twemoji_rows[0]["image"]
    table = tmp_path / "pairs.csv"
    table.write_bytes(f"image,text\n{good},a fine caption\n{tmp_path}/missing.png,gone\n{good},\n".encode()
                      + f"{good},".encode() + b"caf\xe9\n")
    config = config_from_dict(frozen_config(tmp_path, data={"train_file": str(table)}))
    from tuneforge.data.captions import load_image_text_splits

    with pytest.raises(DataError) as error:
        load_image_text_splits(config.data, 0, answers=False)
    message = str(error.value)
    assert "line 3" in message and "missing.png" in message and "line 4" in message
    assert "line 5" not in message  # 'caf\xe9' in an otherwise ASCII file is Windows-1252 'café', not a bad row
    table.write_text(f"images,text\n{good},x\n", encoding="utf-8")
    with pytest.raises(DataError, match="Did you mean 'images'"):
        load_image_text_splits(config.data, 0, answers=False)


def test_config_mistakes_are_caught_before_models_load(tmp_path):
    with pytest.raises(ConfigError, match="method.name: 'lora' is not available for frozen"):
        tuneforge.train(frozen_config(tmp_path, method={"name": "lora"}))
    with pytest.raises(ConfigError, match="frozen.caption_templates"):
        config_from_dict(frozen_config(tmp_path, frozen={"caption_templates": ["no placeholder"]}))
    with pytest.raises(ConfigError, match="frozen.prefix_lenght"):
        config_from_dict(frozen_config(tmp_path, frozen={"prefix_lenght": 4}))
    with pytest.raises(ConfigError, match="frozen.objective: vqa"):
        tuneforge.train(frozen_config(tmp_path, data={"dataset": "easy-vqa"}))
    with pytest.raises(ConfigError, match="eval.metric: 'accuracy'"):
        tuneforge.train(frozen_config(tmp_path, eval={"metric": "accuracy"}))
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made


def test_builtin_image_text_datasets(twemoji_rows):
    from tuneforge.assets.caption_datasets import TWEMOJI_BINDING_CATEGORIES
    from tuneforge.assets.datasets import dataset_folder

    assert len(twemoji_rows) > 1700 and not {r["subcategory"] for r in twemoji_rows} & set(TWEMOJI_BINDING_CATEGORIES)
    assert any(r["text"] == "egypt flag" for r in twemoji_rows)
    binding = dataset_folder("twemoji") / "binding"
    assert sorted(p.name for p in binding.iterdir()) == sorted(TWEMOJI_BINDING_CATEGORIES)
    vqa = dataset_folder("easy-vqa")
    train = (vqa / "train" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    test = (vqa / "test" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    assert (len(train), len(test)) == (38575, 9673)
    assert json.loads(train[0]) == {"image": "images/0.png", "text": "what is the blue shape?", "label": "rectangle"}


def test_tuxpaint_captions_in_other_languages(tmp_path):
    from tuneforge.assets.caption_datasets import TUXPAINT_DIR

    if not TUXPAINT_DIR.is_dir():
        pytest.skip("tuxpaint-stamps-default is not installed (apt-get install, as root)")
    config = config_from_dict(frozen_config(tmp_path, data={"dataset": "tuxpaint"}, frozen={"caption_language": "de",
                                                                                            "binding_data": None}))
    from tuneforge.data.captions import load_image_text_splits

    splits = load_image_text_splits(config.data, 0, answers=False, language="de")
    captions = {row.text for row in splits.train + splits.validation + splits.test}
    assert "Ein rotes Riesenkänguru." in captions and len(captions) > 300


def test_binding_episodes_bind_each_word_to_one_unseen_category():
    import random

    categories = {f"c{i}": [f"c{i}/{j}.png" for j in range(6)] for i in range(5)}
    segments, answer = binding_episode(categories, ways=2, shots=3, rng=random.Random(0))
    images = [value for kind, value in segments if kind == "image"]
    texts = [value for kind, value in segments if kind == "text"]
    assert len(images) == 2 * 3 + 1 and len(set(images)) == len(images)  # the query is a new image
    assert texts[-1] == "Q: What is this? A: This is a"
    named = [image.split("/")[0] for image, text in zip(images, texts[:-1], strict=False) if f"a {answer}." in text]
    assert len(named) == 3 and set(named) == {images[-1].split("/")[0]}  # the answer's images: the query's category
    low, high = wilson_interval(150, 200)
    assert 0.68 < low < 0.75 < high < 0.81


def test_interleaved_training_items_end_by_recalling_a_caption_from_context(tmp_path, twemoji_rows, tiny_llama):
    from tuneforge.data.captions import ImageText
    from tuneforge.data.transforms import Augmentation, Preprocessing
    from tuneforge.tasks.frozen.data import PairDataset

    config = config_from_dict(frozen_config(tmp_path, frozen={"interleaved": 3, "binding_data": None}))
    tokenizer, _ = load_language_model(str(tiny_llama))
    fmt = sequence_format(tokenizer, 2)
    rows = [ImageText(r["image"], r["text"], None, "t") for r in twemoji_rows[:20]]
    data = PairDataset(rows, tokenizer, fmt, Preprocessing.from_config(config.image), config,
                       Augmentation.from_config(config.image), interleaved=3)
    item = data[5]
    kinds = [kind for kind, _ in item["pieces"]]
    assert kinds == ["image", "target"] * 3 + ["image", "text", "target"] and len(item["pixel_values"]) == 4
    captions = [tokenizer.decode(ids[:-1]) for kind, ids in item["pieces"][:6] if kind == "target"]
    assert rows[5].text in captions  # the repeated image was shown, with its caption, before the question
    assert tokenizer.decode(item["pieces"][-1][1][:-1]) == f" {rows[5].text}."
    assert tokenizer.decode(item["pieces"][-2][1]) == "Q: What is this? A: This is a"
